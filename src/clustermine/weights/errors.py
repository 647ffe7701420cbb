"""The errors of weights that cannot be found, fetched or read."""

from __future__ import annotations

import os

# Set to 1 to see the full traceback behind a weights error (hub, torch, safetensors).
TRACEBACK_ENV = "CLUSTERMINE_TRACEBACK"


class WeightsError(RuntimeError):
    """Weights cannot be found, fetched or read; the message says which and what to do."""


class WeightsMissing(WeightsError):
    """A pretrained tag's files are not in the weight cache (and could not be downloaded)."""


class WeightsUnreadable(WeightsError):
    """A checkpoint file exists but is not the weights of the model's architecture."""


def error_cause(err: BaseException) -> BaseException | None:
    """What a clear error is raised ``from``: nothing (no library traceback behind the
    message) unless ``CLUSTERMINE_TRACEBACK=1`` asks for it."""
    return err if os.environ.get(TRACEBACK_ENV, "") not in ("", "0") else None
