"""Bundles: a detector as a self-contained folder (``clustermine export``, docs/deploy.md).

::

    OUT_DIR/
      manifest.json         an index: the files and their checksums, and a summary of them
      detector.h5           the detector file, unchanged
      weights.safetensors   the model's weights (safetensors: nothing pickled)
      label_names.tsv       every positive and negative label name

``clustermine.load_detector(OUT_DIR)`` needs nothing else: no results/ tree, no checkpoint
elsewhere. The manifest is never believed on its own: it is checked against a schema, every
file it names must lie inside the folder and match its checksum, and everything it says about
the detector, its model and its labels must be what the detector file says (what a loaded
bundle reports is read from that file). Loading also says which library versions differ from
the ones that made the bundle.
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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from clustermine.deploy.modelspec import ModelSpec
from clustermine.deploy.output import writing
from clustermine.detectors import Detector, load_detector
from clustermine.missing_files import missing_file

log = logging.getLogger(__name__)

FORMAT = "clustermine-bundle"
FORMAT_VERSION = 1
MANIFEST, DETECTOR, WEIGHTS, LABELS = (
    "manifest.json", "detector.h5", "weights.safetensors", "label_names.tsv",
)  # fmt: skip
# The libraries whose versions decide what a bundle computes.
VERSIONED = ("clustermine", "open_clip_torch", "torch", "numpy", "h5py", "pillow")
REDO = "export the bundle again (clustermine export DETECTOR OUT_DIR)"


class BundleError(ValueError):
    """A bundle folder that is incomplete, damaged, edited, or of a newer format."""


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


# --- what a manifest says ----------------------------------------------------------------------


def stated(detector: Detector, spec: ModelSpec) -> dict[str, Any]:
    """What a manifest says about its detector file and model, section by section: written at
    export, and compared with the files when the bundle is loaded."""
    meta = detector.meta
    return {
        "detector": {
            "method": meta.get("method"),
            "score": detector.name,
            "params": detector.params,
            "tau": detector.tau,
            "idset": meta.get("idset"),
            "label_set": meta.get("labels"),
            "adapts_at_test_time": detector.stateful,
        },
        "model": {
            "slug": meta.get("model"),
            "arch": spec.arch,
            # The identity the embeddings record (a tag, the checkpoint path as the workflow
            # knew it, or random-weights); the weights themselves are `weights`.
            "pretrained": spec.pretrained,
            "random_weights": spec.random_weights,
            "preprocessing": spec.preprocessing,
            "logit_scale": detector.logit_scale,
            "embedding_dim": detector.embedding_dim,
        },
        "labels": {
            "num_positives": len(detector.text_pos.names),
            "num_negatives": len(detector.text_neg.names),
            "positives": list(detector.text_pos.names),
        },
        "calibration": detector.calibration.summary() if detector.calibration else None,
        # What made the embeddings the detector was fitted on.
        "versions": {"embeddings_made_with": meta.get("library_versions") or {}},
    }


def labels_text(detector: Detector) -> str:
    """``label_names.tsv``: ``kind, name`` of every positive and negative label (named apart
    from the label-set files, whose format differs)."""
    lines = ["kind\tname"]
    for kind, texts in (("positive", detector.text_pos), ("negative", detector.text_neg)):
        lines += [f"{kind}\t{name}" for name in texts.names]
    return "\n".join(lines) + "\n"


# The parts of a manifest that are not about the detector file: the files and their checksums,
# and what the exporting machine had.
_INDEX = {"detector": {"file", "sha256"}, "model": {"weights"}, "labels": {"file"},
          "versions": {"exported_with"}}  # fmt: skip
_NAME = {"type": "string", "minLength": 1}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def _section(index: dict[str, Any], facts: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [*index, *facts],
        "additionalProperties": False,
        "properties": {**index, **{key: {} for key in facts}},
    }


SCHEMA = {
    "type": "object",
    "required": ["format", "format_version", "created", "detector", "model", "labels",
                 "calibration", "versions"],  # fmt: skip
    "additionalProperties": False,
    "properties": {
        "format": {"const": FORMAT},
        "format_version": {"type": "integer"},
        "created": {"type": "string"},
        "detector": _section({"file": _NAME, "sha256": _SHA256},
                             ("method", "score", "params", "tau", "idset", "label_set",
                              "adapts_at_test_time")),  # fmt: skip
        "model": _section(
            {"weights": {"type": ["object", "null"], "required": ["file", "sha256", "bytes"],
                         "additionalProperties": False,
                         "properties": {"file": _NAME, "sha256": _SHA256,
                                        "bytes": {"type": "integer", "minimum": 0}}}},
            ("slug", "arch", "pretrained", "random_weights", "preprocessing", "logit_scale",
             "embedding_dim"),
        ),  # fmt: skip
        "labels": _section({"file": _NAME}, ("num_positives", "num_negatives", "positives")),
        "calibration": {"type": ["object", "null"]},
        "versions": _section(
            {"exported_with": {"type": "object", "additionalProperties": {"type": "string"}}},
            ("embeddings_made_with",),
        ),
    },
}


# --- export ------------------------------------------------------------------------------------


def export_bundle(
    detector_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    weights: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Write the bundle of a detector file (or of a bundle) to ``out_dir``; return its
    manifest.

    The model is built (from the recorded tag or checkpoint, or ``checkpoint``) and its
    weights saved as safetensors. ``weights=False`` leaves them out and records the open_clip
    tag only (for public models the receiving machine has in its open_clip cache). The
    folder appears complete or not at all (a full disk is a :class:`WriteError` naming the
    file); an existing one is replaced only with ``force``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not force:
        raise BundleError(f"{out_dir} exists and is not empty; choose another folder or "
                          "pass --force to replace it")  # fmt: skip
    if Path(detector_path).is_dir():
        source = read_bundle(detector_path, checkpoint=checkpoint, device="cpu")
        detector, spec = source.detector, source.model
    else:
        detector = load_detector(detector_path, "cpu")
        spec = ModelSpec.of_detector(detector.meta, str(detector_path), checkpoint=checkpoint)
    if not weights and (spec.is_checkpoint or spec.random_weights):
        raise BundleError(
            f"{detector_path}: its model's weights are a local checkpoint or random weights, "
            "which no other machine has: export them (leave out --no-weights)"
        )
    model = spec.build("cpu").model if weights else None
    with writing(out_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        with writing(out_dir / DETECTOR):
            shutil.copyfile(detector.path, tmp / DETECTOR)
        weight_info = None
        if model is not None:
            with writing(out_dir / WEIGHTS):
                weight_info = _save_weights(model, tmp / WEIGHTS)
        with writing(out_dir / LABELS):
            (tmp / LABELS).write_text(labels_text(detector), encoding="utf-8")
        # Described as a loaded bundle describes it: with the weights it carries.
        spec = ModelSpec.of_detector(detector.meta, str(out_dir),
                                     weights=tmp / WEIGHTS if weight_info else None)  # fmt: skip
        manifest = _manifest(stated(detector, spec), sha256(tmp / DETECTOR), weight_info)
        with writing(out_dir / MANIFEST):
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        mask = _umask()  # mkdtemp and safetensors create private files; a bundle is not
        os.chmod(tmp, 0o777 & ~mask)
        for path in tmp.iterdir():
            os.chmod(path, 0o666 & ~mask)
        with writing(out_dir):
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


def _manifest(facts: dict[str, Any], detector_sha256: str, weight_info) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "detector": {"file": DETECTOR, "sha256": detector_sha256, **facts["detector"]},
        "model": {**facts["model"], "weights": weight_info},
        "labels": {"file": LABELS, **facts["labels"]},
        "calibration": facts["calibration"],
        "versions": {"exported_with": versions(), **facts["versions"]},
    }


# --- loading -----------------------------------------------------------------------------------


@dataclass
class Bundle:
    """A bundle's detector and model, checked against its manifest."""

    detector: Detector
    model: ModelSpec
    manifest: dict[str, Any]
    version_differences: dict[str, dict[str, str | None]]


def read_manifest(bundle: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a bundle folder, checked against :data:`SCHEMA`; a
    :class:`BundleError` naming the key otherwise."""
    import jsonschema

    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not path.is_file():
        if os.path.islink(bundle) and not bundle.exists():
            raise BundleError(missing_file(bundle, "bundle"))
        if os.path.islink(path):
            raise BundleError(missing_file(path, "bundle manifest"))
        raise BundleError(
            f"{bundle}: not a detector bundle (no {MANIFEST}); bundles are made by "
            "`clustermine export DETECTOR OUT_DIR`"
        )
    _inside(bundle, MANIFEST, MANIFEST)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path}: not valid JSON ({err}); {REDO}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: not a JSON object but {type(manifest).__name__}; {REDO}")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a clustermine bundle manifest (format is "
                          f"{manifest.get('format')!r}, not {FORMAT!r})")  # fmt: skip
    version = manifest.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        made = (manifest.get("versions") or {}).get("exported_with") or {}
        raise BundleError(
            f"{path}: bundle format {version!r} is newer than this clustermine reads "
            f"({FORMAT_VERSION}); upgrade clustermine (the bundle was made with "
            f"{made.get('clustermine') if isinstance(made, dict) else None})"
        )
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(manifest)
    )
    if error is not None:
        raise BundleError(f"{path}: {_describe(error)}; {REDO}")
    return manifest


def _describe(error) -> str:
    """A schema error as the key it concerns and what is wrong with it."""
    where = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        missing = next(key for key in error.validator_value if key not in error.instance)
        return f"key {where + '.' if where else ''}{missing} is missing"
    return f"{where}: {error.message}" if where else error.message


def read_bundle(
    bundle: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    weights_cache: str | os.PathLike | None = None,
    device: str | None = None,
) -> Bundle:
    """A bundle folder's detector and model, every file checked (see the module's text).
    ``checkpoint``: weights to use instead of the bundle's."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    where = bundle / MANIFEST
    # Every path inside the folder, before anything is opened.
    detector_file = _inside(bundle, manifest["detector"]["file"], "detector.file")
    weights = manifest["model"]["weights"]
    weights_file = _inside(bundle, weights["file"], "model.weights.file") if weights else None
    labels_file = _inside(bundle, manifest["labels"]["file"], "labels.file")
    _check_checksum(detector_file, manifest["detector"], "detector file", where)
    if weights_file is not None:
        _check_checksum(weights_file, weights, "weights file", where)
    detector = load_detector(detector_file, device)
    spec = ModelSpec.of_detector(detector.meta, str(bundle), weights=weights_file)
    _check_agreement(manifest, stated(detector, spec), where)
    if not labels_file.is_file() or labels_file.read_bytes() != labels_text(detector).encode():
        raise BundleError(
            f"{bundle / manifest['labels']['file']}: missing, or differs from the label names "
            f"of the detector file: it was changed after export; {REDO}"
        )
    spec = ModelSpec.of_detector(detector.meta, str(bundle), weights=weights_file,
                                 checkpoint=checkpoint, weights_cache=weights_cache)  # fmt: skip
    differences = version_differences(manifest)
    if differences:
        log.warning(
            "%s was exported with other library versions than these: %s; its scores may "
            "differ slightly",
            bundle,
            ", ".join(f"{k} {v['bundle']} (here {v['here']})" for k, v in differences.items()),
        )
    return Bundle(detector, spec, manifest, differences)


def _inside(bundle: Path, name: str, key: str) -> Path:
    """``bundle / name`` with symbolic links resolved; a :class:`BundleError` naming ``key``
    where that leads out of the bundle folder."""
    root = bundle.resolve()
    path = (root / name).resolve()
    if path == root or not path.is_relative_to(root):
        raise BundleError(
            f"{bundle / MANIFEST}: {key} {name!r} is outside the bundle folder (it leads to "
            f"{path}); a bundle's files lie in its folder: {REDO}"
        )
    return path


def _check_checksum(path: Path, entry: dict[str, Any], what: str, manifest: Path) -> None:
    if not path.is_file():
        if os.path.islink(path):
            raise BundleError(f"{manifest}: {missing_file(path, what)}; {REDO}")
        raise BundleError(f"{manifest}: the {what} {entry['file']} is missing; {REDO}")
    if sha256(path) != entry["sha256"]:
        raise BundleError(
            f"{path}: checksum differs from the manifest's: the {what} was changed or damaged "
            f"after export; {REDO}"
        )


def _check_agreement(manifest: dict[str, Any], facts: dict[str, Any], where: Path) -> None:
    """Refuse a manifest saying anything about the detector file that the file does not."""
    for section, value in facts.items():
        said = manifest.get(section)
        if isinstance(value, dict) and isinstance(said, dict):
            keys = sorted(set(value) | (set(said) - _INDEX.get(section, set())))
            pairs = [(f"{section}.{key}", said.get(key), value.get(key)) for key in keys]
        else:
            pairs = [(section, said, value)]
        for key, theirs, ours in pairs:
            if _json(theirs) != _json(ours):
                raise BundleError(
                    f"{where}: {key}: the manifest says {_short(theirs)}, but the bundle's "
                    f"detector file {_short(ours)}: the manifest was changed after export; "
                    f"{REDO}"
                )


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _short(value: Any) -> str:
    text = _json(value)
    return text if len(text) <= 120 else text[:117] + "..."


def version_differences(manifest: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    """``{package: {"bundle": version, "here": version}}`` for every version that differs."""
    made = manifest.get("versions", {}).get("exported_with", {})
    here = versions()
    return {
        pkg: {"bundle": made.get(pkg), "here": here.get(pkg)}
        for pkg in sorted(set(made) | set(here))
        if made.get(pkg) != here.get(pkg)
    }
