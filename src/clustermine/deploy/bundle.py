"""Bundles: a detector as a self-contained folder (``clustermine export``, docs/deploy.md).

::

    OUT_DIR/
      manifest.json         model, method, labels, calibration, versions, checksums
      detector.h5           the detector file, unchanged
      weights.safetensors   the model's weights (safetensors: nothing pickled)
      labels.tsv            every positive and negative label name

``load_detector(OUT_DIR)`` needs nothing else: no results/ tree, no checkpoint elsewhere.
Loading checks the files' checksums and says which library versions differ from the ones
that made the bundle.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from clustermine.deploy.modelspec import ModelSpec, resolve_checkpoint

log = logging.getLogger(__name__)

FORMAT = "clustermine-bundle"
FORMAT_VERSION = 1
MANIFEST, DETECTOR, WEIGHTS, LABELS = (
    "manifest.json", "detector.h5", "weights.safetensors", "labels.tsv",
)  # fmt: skip
# The libraries whose versions decide what a bundle computes.
VERSIONED = ("clustermine", "open_clip_torch", "torch", "numpy", "h5py", "pillow")


class BundleError(ValueError):
    """A bundle folder that is incomplete, damaged, or of a newer format."""


def versions() -> dict[str, str]:
    out = {}
    for pkg in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_bundle(
    detector_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    weights: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Write the bundle of a detector file to ``out_dir``; return its manifest.

    The model is built (from the recorded tag or checkpoint, or ``checkpoint``) and its
    weights saved as safetensors. ``weights=False`` leaves them out and records the open_clip
    tag only (for public models the receiving machine has in its open_clip cache). The
    folder appears complete or not at all; an existing one is replaced only with ``force``.
    """
    from clustermine.deploy.detector import load_detector

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not force:
        raise BundleError(f"{out_dir} exists and is not empty; choose another folder or "
                          "pass --force to replace it")  # fmt: skip
    det = load_detector(detector_path, checkpoint=checkpoint, device="cpu")
    spec = det.model_spec
    if not weights and (spec.is_checkpoint or spec.random_weights):
        raise BundleError(
            f"{detector_path}: its model's weights are a local checkpoint or random weights, "
            "which no other machine has: export them (leave out --no-weights)"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        shutil.copyfile(det.detector.path, tmp / DETECTOR)  # a bundle's own, for a bundle
        weight_info = None
        if weights:
            weight_info = _save_weights(det.model.model, tmp / WEIGHTS)
        _write_labels(det.detector, tmp / LABELS)
        manifest = _manifest(det, spec, tmp / DETECTOR, weight_info)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        mask = _umask()  # mkdtemp and safetensors create private files; a bundle is not
        os.chmod(tmp, 0o777 & ~mask)
        for path in tmp.iterdir():
            os.chmod(path, 0o666 & ~mask)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to %s", detector_path, out_dir)
    return manifest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _save_weights(model, path: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # safetensors refuses tensors sharing memory; a copy of each breaks the sharing.
    seen: set[int] = set()
    for key, value in state.items():
        ptr = value.data_ptr()
        if ptr in seen and value.numel():
            state[key] = value.clone()
        seen.add(ptr)
    save_file(state, str(path), metadata={"format": "pt"})
    return {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size}


def _write_labels(detector, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("kind\tname\n")
        for kind, texts in (("positive", detector.text_pos), ("negative", detector.text_neg)):
            for name in texts.names:
                f.write(f"{kind}\t{name}\n")


def _manifest(det, spec: ModelSpec, detector_file: Path, weight_info) -> dict[str, Any]:
    d, meta = det.detector, det.meta
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "detector": {
            "file": DETECTOR,
            "sha256": sha256(detector_file),
            "method": meta.get("method"),
            "score": d.name,
            "params": d.params,
            "tau": d.tau,
            "idset": meta.get("idset"),
            "label_set": meta.get("labels"),
            "adapts_at_test_time": d.stateful,
        },
        "model": {
            "slug": meta.get("model"),
            "arch": spec.arch,
            # The identity the embeddings record (a tag, the checkpoint path as the workflow
            # knew it, or random-weights); the weights themselves are `weights`.
            "pretrained": spec.pretrained,
            "weights": weight_info,
            "random_weights": spec.random_weights,
            "preprocessing": spec.preprocessing or repr(det.model.preprocess),
            "logit_scale": d.logit_scale,
            "embedding_dim": d.embedding_dim,
        },
        "labels": {
            "file": LABELS,
            "num_positives": len(d.text_pos.names),
            "num_negatives": len(d.text_neg.names),
            "positives": list(d.text_pos.names),
        },
        "calibration": d.calibration.summary() if d.calibration is not None else None,
        "versions": {
            "exported_with": versions(),
            # What made the embeddings the detector was fitted on.
            "embeddings_made_with": meta.get("library_versions") or {},
        },
    }


def read_manifest(bundle: str | os.PathLike) -> dict[str, Any]:
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{bundle}: not a detector bundle (no {MANIFEST}); bundles are made by "
            "`clustermine export DETECTOR OUT_DIR`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path}: not valid JSON ({err}); export the bundle again") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a clustermine bundle manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {version!r} is newer than this clustermine reads "
            f"({FORMAT_VERSION}); upgrade clustermine (the bundle was made with "
            f"{manifest.get('versions', {}).get('exported_with', {}).get('clustermine')})"
        )
    return manifest


def _check_file(bundle: Path, entry: dict[str, Any] | None, what: str) -> Path:
    path = bundle / entry["file"]
    if not path.is_file():
        raise BundleError(f"{bundle}: the {what} {entry['file']} is missing; export it again")
    if sha256(path) != entry["sha256"]:
        raise BundleError(
            f"{path}: checksum differs from the manifest's: the {what} was changed or damaged "
            "after export; export the bundle again"
        )
    return path


def version_differences(manifest: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    """``{package: {"bundle": version, "here": version}}`` for every version that differs."""
    made = manifest.get("versions", {}).get("exported_with", {})
    here = versions()
    return {
        pkg: {"bundle": made.get(pkg), "here": here.get(pkg)}
        for pkg in sorted(set(made) | set(here))
        if made.get(pkg) != here.get(pkg)
    }


def load_bundle(
    bundle: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    weights_cache: str | os.PathLike | None = None,
    device: str | None = None,
    **options: Any,
):
    """A bundle folder as a :class:`~clustermine.deploy.detector.DeployedDetector`."""
    from clustermine.deploy.detector import DeployedDetector
    from clustermine.detectors import load_detector as load_detector_file

    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    detector_file = _check_file(bundle, manifest["detector"], "detector file")
    model = manifest["model"]
    spec = ModelSpec(
        model.get("arch"),
        model.get("pretrained"),
        model.get("preprocessing"),
        origin=str(bundle),
        weights_cache=None if weights_cache is None else str(weights_cache),
    )
    if checkpoint is not None:
        spec.weights = resolve_checkpoint(checkpoint)
    elif model.get("weights"):
        spec.weights = str(_check_file(bundle, model["weights"], "weights file"))
    differences = version_differences(manifest)
    if differences:
        log.warning(
            "%s was exported with other library versions than these: %s; its scores may "
            "differ slightly",
            bundle,
            ", ".join(f"{k} {v['bundle']} (here {v['here']})" for k, v in differences.items()),
        )
    detector = load_detector_file(detector_file, device)
    return DeployedDetector(
        detector,
        spec,
        source=str(bundle),
        manifest=manifest,
        version_differences=differences,
        device=device,
        **options,
    )
