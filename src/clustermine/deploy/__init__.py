"""The second front door: a fitted detector scores new images from a command
(``clustermine score``), the Python API (``clustermine.load_detector``, which is
:func:`load_deployed_detector`) and an HTTP service (``clustermine serve``); ``clustermine
export`` makes a self-contained bundle of it (docs/deploy.md).

Modules, each importing only those before it: :mod:`~clustermine.deploy.output` (writing
with clear errors), :mod:`~clustermine.deploy.modelspec` (which model, where its weights are),
:mod:`~clustermine.deploy.inputs` (images in), :mod:`~clustermine.deploy.bundle` (bundles),
:mod:`~clustermine.deploy.encoder` (images to what a score reads),
:mod:`~clustermine.deploy.predictions` (what comes out), :mod:`~clustermine.deploy.detector`
(the API), :mod:`~clustermine.deploy.service` and
:mod:`~clustermine.deploy.commands` (the subcommands).
"""

from __future__ import annotations

import importlib

# Imported on first use: the command-line parser imports this package, and building it should
# not import torch.
_EXPORTS = {
    "DeployedDetector": "clustermine.deploy.detector",
    "Label": "clustermine.deploy.predictions",
    "Predictions": "clustermine.deploy.predictions",
    "UnreadableImages": "clustermine.deploy.predictions",
    "UnscorableEmbeddings": "clustermine.deploy.predictions",
    "load_deployed_detector": "clustermine.deploy.detector",
    "ModelUnavailable": "clustermine.deploy.modelspec",
    "export_bundle": "clustermine.deploy.bundle",
    "BundleError": "clustermine.deploy.bundle",
    "WriteError": "clustermine.deploy.output",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'clustermine.deploy' has no attribute {name!r}")
