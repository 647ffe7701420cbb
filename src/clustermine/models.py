"""Build any open_clip model by name: pretrained tag, local checkpoint, or random weights."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from clustermine.compute import pick_device
from clustermine import weights
from clustermine.weights import (
    WeightsMissing,
    WeightsUnreadable,
    is_local_checkpoint,
    is_random,
)

log = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random-weights"


@dataclass
class LoadedModel:
    model: Any
    preprocess: Any
    tokenizer: Any
    device: torch.device
    arch: str
    pretrained: str  # tag, checkpoint path, or RANDOM_WEIGHTS

    @property
    def logit_scale(self) -> float:
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.exp().item()) if scale is not None else 100.0

    def attrs(self) -> dict[str, Any]:
        """Model attributes every embedding file carries (DESIGN §4)."""
        return {
            "model_arch": self.arch,
            "model_pretrained": self.pretrained,
            "random_weights": self.pretrained == RANDOM_WEIGHTS,
            "logit_scale": self.logit_scale,
            "preprocessing": repr(self.preprocess),
            "library_versions": library_versions(),
        }

    def autocast(self, precision: str = "auto"):
        """Mixed precision on CUDA (``auto``/``amp``), full precision otherwise."""
        if self.device.type == "cuda" and precision in ("auto", "amp", "amp_bf16"):
            dtype = torch.bfloat16 if precision == "amp_bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("clustermine", "torch", "open_clip_torch", "numpy", "h5py"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def load_model(
    arch: str,
    pretrained: str | None,
    device: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    slug: str | None = None,
    checkpoint_copy: str | os.PathLike | None = None,
) -> LoadedModel:
    """Create an open_clip model with its preprocessing and tokenizer.

    ``pretrained`` is an open_clip tag (e.g. ``laion2b_s34b_b79k``), a local checkpoint
    path, or ``None`` for random weights (fine for testing plumbing, meaningless scores).
    With ``cache_dir`` (the workflow's weight cache) a tag is loaded from there with hub
    access switched off, and fails at once with :class:`WeightsMissing` when its files are
    not there; without it open_clip's own caches and downloads are used. ``slug`` (the
    model's key in the config) makes every error name the config key to fix.
    ``checkpoint_copy`` is a copy of the local checkpoint ``pretrained`` names (a job's staged
    input) to read instead; the model is still recorded under ``pretrained``.
    """
    import open_clip

    from . import model_configs

    model_configs.register()
    if arch not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip architecture {arch!r}; see open_clip.list_models() "
            "(e.g. ViT-B-32, ViT-H-14) or add a model config"
        )
    dev = pick_device(device)
    checkpoint = None
    if is_random(pretrained):
        log.warning(
            "MODEL %s HAS RANDOM WEIGHTS (pretrained: null): embeddings and scores are "
            "meaningless; use a pretrained tag or checkpoint for real results",
            arch,
        )
        tag, label = None, RANDOM_WEIGHTS
    else:
        tag = label = str(pretrained)
        if is_local_checkpoint(tag):
            checkpoint = tag = os.fspath(checkpoint_copy or tag)
            if not Path(tag).exists():
                raise FileNotFoundError(
                    f"{_key(slug)}: checkpoint file {tag} does not exist (model {arch})"
                )
        elif cache_dir is not None:
            source = weights.weight_source(arch, tag)
            checkpoint = weights.cached_weights(source, cache_dir)
            if checkpoint is None:
                raise WeightsMissing(weights.missing_message(
                    slug, arch, tag, cache_dir, looked_for=source.describe()))  # fmt: skip
    torch.manual_seed(0)  # random-weight models are reproducible
    cache = None if cache_dir is None else str(cache_dir)
    offline = weights.hub_offline(cache_dir) if cache and tag else contextlib.nullcontext()
    with offline:
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=tag, device=dev, cache_dir=cache
            )
        except Exception as err:  # noqa: BLE001 - classified into one clear error below
            raise _weights_error(err, slug, arch, tag, checkpoint, cache_dir) from (
                weights.error_cause(err)
            )
        try:
            tokenizer = open_clip.get_tokenizer(arch, cache_dir=cache)
        except Exception as err:  # noqa: BLE001
            if tag is None or not weights.is_offline_error(err):
                raise
            raise WeightsMissing(weights.missing_message(
                slug, arch, tag, cache_dir,
                what=f"the tokenizer files of {weights.tokenizer_repo(arch)}",
            )) from weights.error_cause(err)  # fmt: skip
    model.eval()
    return LoadedModel(model, preprocess, tokenizer, dev, arch, label)


def _key(slug: str | None) -> str:
    return f"models.{slug or '<slug>'}.pretrained"


def _weights_error(err, slug, arch, tag, checkpoint, cache_dir) -> Exception:
    """The one clear error behind a failed ``create_model_and_transforms``: weights (or a
    file the model reads beside them) that could not be downloaded, or a checkpoint that is
    not ``arch``'s weights (never torch's advice to load it with ``weights_only=False``,
    which would run code from the file)."""
    if tag is None:
        return err
    if "Failed to download" in str(err) or weights.is_offline_error(err):
        reason = weights.short_reason(err)
        what = "its weights" if checkpoint is None else "files it reads beside its weights"
        return WeightsMissing(
            weights.missing_message(slug, arch, tag, cache_dir, reason, what=what)
        )
    if checkpoint is None:
        return err
    return WeightsUnreadable(
        f"{_key(slug)}: {checkpoint} cannot be loaded as the weights of {arch}: "
        f"{checkpoint_problem(checkpoint, arch, err)}. Download it again (for a tag: delete "
        f"it from the weight cache and run {weights.fetch_command(slug)}), or point "
        f"{_key(slug)} at the checkpoint of this architecture."
    )


def checkpoint_problem(path: str | os.PathLike, arch: str, err: BaseException) -> str:
    """What is wrong with a checkpoint file that open_clip failed to load as ``arch``'s
    weights: unreadable, or the keys and shapes of another architecture. Reads only the
    file's keys and shapes (memory-mapped), never runs code from it."""
    try:
        found = checkpoint_shapes(path)
    except CheckpointUnreadable as bad:
        return bad.why
    expected = model_shapes(arch)
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [k for k in expected if k in found and found[k] != expected[k]]
    parts = [f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
             for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                ("tensors of another shape", reshaped)) if keys]  # fmt: skip
    if parts:
        return f"it holds the weights of another architecture: {'; '.join(parts)}"
    first = (str(err).strip().splitlines() or [""])[0]
    return f"open_clip could not load it ({type(err).__name__}: {first[:200]})"


class CheckpointUnreadable(WeightsUnreadable):
    """A local file that cannot be read as a PyTorch / open_clip checkpoint; ``why`` says
    what it is instead, the message names the file."""

    def __init__(self, path: str | os.PathLike, why: str):
        self.path, self.why = str(path), why
        super().__init__(f"{path}: {why}")


NOT_A_CHECKPOINT = "it is not a PyTorch/open_clip checkpoint"


def checkpoint_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """{key: shape} of the tensors in a checkpoint file (a state dict, or one under
    ``state_dict``), without loading them (memory-mapped, plain tensors only: never runs
    code from the file). Whatever else the file is (text, random bytes, empty, truncated) is
    a :class:`CheckpointUnreadable` naming the file and saying what it is."""
    path = str(path)
    if path.endswith(".safetensors") and not os.path.isdir(path):
        try:
            from safetensors import safe_open

            with safe_open(path, "pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except (FileNotFoundError, PermissionError) as err:
            raise CheckpointUnreadable(path, f"it cannot be read ({err.strerror})") from None
        except Exception as err:  # noqa: BLE001 - whatever safetensors raises on bad bytes
            raise CheckpointUnreadable(path, _not_a_checkpoint(path, err)) from None
    obj = load_torch_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not any(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointUnreadable(
            path, f"{NOT_A_CHECKPOINT} (it holds no state dict of tensors but a "
            f"{type(obj).__name__})")  # fmt: skip
    return {
        k[7:] if k.startswith("module.") else k: tuple(v.shape)
        for k, v in obj.items()
        if torch.is_tensor(v)
    }


def load_torch_file(path: str | os.PathLike) -> Any:
    """What ``torch.save`` wrote to ``path``, loaded weights-only (plain tensors and
    containers: never runs code from the file), memory-mapped where the format allows.
    Whatever else the file is (text, random bytes, empty, truncated, a folder) is a
    :class:`CheckpointUnreadable` naming the file and saying what it is."""
    path = str(path)
    if os.path.isdir(path):
        raise CheckpointUnreadable(path, "it is a folder, not a checkpoint file")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            # Not torch.save's zip format: the legacy format, or not a checkpoint at all.
            return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError) as err:
        raise CheckpointUnreadable(path, f"it cannot be read ({err.strerror})") from None
    except Exception as err:  # noqa: BLE001 - on arbitrary bytes torch's weights-only
        # unpickler raises KeyError, IndexError, ValueError, EOFError, UnpicklingError, ...
        raise CheckpointUnreadable(path, _not_a_checkpoint(path, err)) from None


def _not_a_checkpoint(path: str, err: BaseException) -> str:
    """Why a file that torch / safetensors could not read is not a checkpoint, judged from
    its first bytes (never torch's advice to load it with ``weights_only=False``, which would
    run code from the file)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0][:200]
    text = _as_text(head)
    if not head:
        what = "the file is empty: an interrupted download or copy?"
    elif text is not None:
        line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        what = f"it is a text file, beginning {line[:40]!r}"
    elif path.endswith(".safetensors"):
        what = f"not a valid safetensors file: {first}; a broken download?"
    elif head.startswith(b"PK\x03\x04"):  # torch.save's format is a zip archive
        what = f"a truncated or damaged zip archive: {first}; a broken download?"
    else:
        what = ("its bytes are not tensors saved by torch.save: a broken download, or another "
                "kind of file")  # fmt: skip
    return f"{NOT_A_CHECKPOINT} ({what})"


def _as_text(head: bytes) -> str | None:
    """The first bytes of a file as text, or None where they are not printable UTF-8."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not just a character cut at the end of the block
            return None
        text = head[: err.start].decode("utf-8")
    printable = all(c.isprintable() or c in "\t\r\n\f" for c in text)
    return text if printable else None


def model_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """{key: shape} of ``arch``'s state dict, built on the meta device (no memory used)."""
    import open_clip

    logging.disable(logging.WARNING)  # open_clip warns that it has no weights: that is wanted
    try:
        with torch.device("meta"):
            model = open_clip.create_model(arch, pretrained=None, device="meta")
    finally:
        logging.disable(logging.NOTSET)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
