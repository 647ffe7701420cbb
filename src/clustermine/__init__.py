"""clustermine: label-free visual OOD detection with CLIP models (ClusterMine and baselines)."""

__version__ = "0.1.0"


def load_detector(path, **options):
    """A detector file or bundle, ready to score new images (docs/deploy.md): see
    :func:`clustermine.deploy.load_deployed_detector`. Imported on first use, so that ``import
    clustermine`` stays light (the workflow imports it when it is parsed)."""
    from clustermine.deploy import load_deployed_detector

    return load_deployed_detector(path, **options)
