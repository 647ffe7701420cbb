"""The error of a dataset that cannot be read as declared."""


class DatasetError(ValueError):
    """A dataset cannot be read as declared; the message names the file (and line) and says
    what to do."""
