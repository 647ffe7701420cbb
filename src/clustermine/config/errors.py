"""The error of a malformed config."""


class ConfigError(ValueError):
    """The config is malformed or names something that is not declared."""
