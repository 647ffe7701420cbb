"""Where a model's weights come from, and the weight cache (docs/slurm.md, "Model weights").

``pretrained`` is an open_clip pretrained tag, a local checkpoint file, or none (random
weights). A tag's files are fetched once, on a machine with internet access (the workflow's
local rule ``fetch_weights`` on the submit host, or ``clustermine fetch``), into a cache folder
(``weights_cache`` in the config, default ``resources/weights``) laid out as open_clip and
huggingface_hub lay out theirs; jobs then load them from there with hub access switched off
(:func:`hub_offline`), and a tag whose files are not there fails at once with one message
(:func:`missing_message`).

Importing this module is torch-free (the workflow asks it when it is parsed); the functions
that need open_clip import it when called.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
DEFAULT_CACHE = "resources/weights"
# Set to 1 to see the full traceback behind a weights error (hub, torch, safetensors).
TRACEBACK_ENV = "CLUSTERMINE_TRACEBACK"
# open_clip's default file name in a Hugging Face repository, and its safetensors twin.
HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"


class WeightsError(RuntimeError):
    """Weights cannot be found, fetched or read; the message says which and what to do."""


class WeightsMissing(WeightsError):
    """A pretrained tag's files are not in the weight cache (and could not be downloaded)."""


class WeightsUnreadable(WeightsError):
    """A checkpoint file exists but is not the weights of the model's architecture."""


def is_random(pretrained: str | None) -> bool:
    """``pretrained: null`` (or an empty / "none" / "random" value): random weights."""
    return pretrained is None or str(pretrained).lower() in ("", "none", "null", "random")


def is_local_checkpoint(pretrained: str | None) -> bool:
    """A path to a checkpoint file rather than a pretrained tag."""
    if is_random(pretrained):
        return False
    text = str(pretrained)
    return os.sep in text or text.endswith(CHECKPOINT_SUFFIXES)


def is_pretrained_tag(pretrained: str | None) -> bool:
    """An open_clip pretrained tag: its files must be fetched into the weight cache."""
    return not is_random(pretrained) and not is_local_checkpoint(pretrained)


def error_cause(err: BaseException) -> BaseException | None:
    """What a clear error is raised ``from``: nothing (no library traceback behind the
    message) unless ``CLUSTERMINE_TRACEBACK=1`` asks for it."""
    return err if os.environ.get(TRACEBACK_ENV, "") not in ("", "0") else None


# --- where a tag's files are -----------------------------------------------------------------


@dataclass(frozen=True)
class WeightSource:
    """Where open_clip downloads the weights of ``arch`` + ``tag`` from: a Hugging Face
    repository (``repo_id``, candidate ``filenames``, the preferred first) or a URL."""

    arch: str
    tag: str
    repo_id: str | None = None
    filenames: tuple[str, ...] = ()
    url: str | None = None

    def describe(self) -> str:
        if self.repo_id:
            return f"hf-hub:{self.repo_id}/" + " or ".join(self.filenames)
        return str(self.url)


def _safe_alternatives(filename: str) -> list[str]:
    """The safetensors files open_clip tries before ``filename`` (as its own
    ``_get_safe_alternatives``)."""
    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors"]
    return []


def pretrained_cfg(arch: str, tag: str) -> dict[str, Any]:
    """open_clip's record of a pretrained tag; an unknown tag is a clear error."""
    import open_clip

    from clustermine import model_configs

    model_configs.register()
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise WeightsError(
            f"open_clip knows no pretrained tag {tag!r} for architecture {arch!r} "
            f"(its tags: {', '.join(tags) or 'none'}); fix models.<slug>.pretrained, or give "
            "a local checkpoint file"
        )
    return cfg


def weight_source(arch: str, tag: str) -> WeightSource:
    """Where open_clip fetches ``arch`` + ``tag`` from (the hub when the tag names a
    repository, as open_clip prefers, else its URL)."""
    cfg = pretrained_cfg(arch, tag)
    if "file" in cfg:  # a tag registered with a local file
        return WeightSource(arch, tag, url=cfg["file"])
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        return WeightSource(arch, tag, repo_id, (*_safe_alternatives(filename), filename))
    return WeightSource(arch, tag, url=cfg["url"])


def _hub_cache_file(repo_id: str, filename: str, cache_dir: str | os.PathLike) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache_dir))
    return Path(found) if isinstance(found, str) else None


def cached_weights(source: WeightSource, cache_dir: str | os.PathLike) -> Path | None:
    """The cached weight file of ``source`` in ``cache_dir``, or None; never goes online."""
    if source.repo_id:
        for filename in source.filenames:
            found = _hub_cache_file(source.repo_id, filename, cache_dir)
            if found is not None:
                return found
        return None
    path = Path(str(source.url))
    if path.is_absolute():  # a tag registered with a local file
        return path if path.is_file() else None
    path = Path(cache_dir) / os.path.basename(str(source.url))
    return path if path.is_file() else None


def tokenizer_repo(arch: str) -> str | None:
    """The Hugging Face repository of a model's tokenizer when it is not open_clip's own
    (SigLIP models), which must be fetched with the weights."""
    import open_clip

    from clustermine import model_configs

    model_configs.register()
    text_cfg = (open_clip.get_model_config(arch) or {}).get("text_cfg", {})
    name = text_cfg.get("hf_tokenizer_name")
    return name if name and not os.path.isdir(name) else None


def text_config_repo(arch: str) -> str | None:
    """The Hugging Face repository whose ``config.json`` a transformer text tower reads."""
    import open_clip

    from clustermine import model_configs

    model_configs.register()
    text_cfg = (open_clip.get_model_config(arch) or {}).get("text_cfg", {})
    name = text_cfg.get("hf_model_name")
    return name if name and not os.path.isdir(name) else None


@contextlib.contextmanager
def hub_offline(cache_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """Switch Hugging Face hub access off (and, with ``cache_dir``, make it the hub cache
    that every library reading the hub uses: open_clip, timm, transformers) for the block."""
    import huggingface_hub.constants as hub

    saved = (hub.HF_HUB_OFFLINE, hub.HF_HUB_CACHE)
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HUB_CACHE")}
    hub.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    if cache_dir is not None:
        hub.HF_HUB_CACHE = str(cache_dir)
        os.environ["HF_HUB_CACHE"] = str(cache_dir)
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE, hub.HF_HUB_CACHE = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _hub_cache(cache_dir: str | os.PathLike) -> Iterator[None]:
    """Make ``cache_dir`` the hub cache for the block (downloads allowed)."""
    import huggingface_hub.constants as hub

    saved = hub.HF_HUB_CACHE
    hub.HF_HUB_CACHE = str(cache_dir)
    try:
        yield
    finally:
        hub.HF_HUB_CACHE = saved


# --- the message of a missing tag ------------------------------------------------------------


def _slugs(slug: str | None) -> list[str]:
    """Model slugs: one, or several comma-separated (models sharing architecture and tag)."""
    return [s for s in (slug or "").split(",") if s]


def fetch_command(slug: str | None, configfiles: list[str] | None = None) -> str:
    configs = " ".join(f"--configfile {c}" for c in configfiles or []) or "--configfile <config>"
    return f"clustermine fetch {configs}" + "".join(f" --model {s}" for s in _slugs(slug))


def missing_message(
    slug: str | None,
    arch: str,
    tag: str,
    cache_dir: str | os.PathLike | None,
    reason: str | None = None,
    configfiles: list[str] | None = None,
    looked_for: str | None = None,
    what: str = "its weights",
) -> str:
    """One message naming the model, its architecture and tag, the cache folder looked in
    and the command that fetches the weights (``what`` is missing: its weights, or a file
    it reads beside them)."""
    slugs = _slugs(slug)
    names = ", ".join(f"'{s}'" for s in slugs)
    who = (f"model{'s' if len(slugs) > 1 else ''} {names} ({arch}, pretrained {tag})" if slugs
           else f"model {arch} ({tag})")  # fmt: skip
    where = f"the weight cache {cache_dir}" if cache_dir else "open_clip's download caches"
    looked = f" (looked for {looked_for})" if looked_for else ""
    lines = [f"{who}: {what} are not in {where}{looked}."]
    if reason:
        lines.append(f"Downloading failed: {reason}")
    lines.append(
        "Fetch them once on a machine with internet access (a cluster's login node):\n"
        f"    {fetch_command(slug, configfiles)}\n"
        "(the workflow's local rule fetch_weights does the same when the workflow starts), or "
        f"set models.{slugs[0] if len(slugs) == 1 else '<slug>'}.pretrained to a checkpoint file."
    )
    return "\n".join(lines)


_OFFLINE_SIGNS = (
    "offline mode is enabled",
    "outgoing traffic has been disabled",
    "cannot find the requested files in the local cache",
    "couldn't find them in the cached files",
    "LocalEntryNotFound",
)


def is_offline_error(err: BaseException) -> bool:
    """Whether ``err`` (or what it was raised from) says a hub file is not cached and could
    not be downloaded."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = f"{type(err).__name__}: {err}"
        if any(sign in text for sign in _OFFLINE_SIGNS):
            return True
        err = err.__cause__ or err.__context__
    return False


def _short_reason(err: BaseException) -> str:
    if is_offline_error(err) and _hub_is_offline():
        return "hub access is switched off (HF_HUB_OFFLINE=1)"
    text = str(err).strip().splitlines()
    first = next((line for line in text if line.strip()), type(err).__name__)
    return first if len(first) < 300 else first[:297] + "..."


def _hub_is_offline() -> bool:
    import huggingface_hub.constants as hub

    return bool(hub.HF_HUB_OFFLINE)


# --- fetching ---------------------------------------------------------------------------------


def fetch(
    arch: str,
    tag: str,
    cache_dir: str | os.PathLike,
    slug: str | None = None,
    configfiles: list[str] | None = None,
) -> tuple[Path, bool]:
    """Make sure the files of ``arch`` + ``tag`` are in ``cache_dir``: (weight file, whether
    it was downloaded now). Files already there are used as they are (no network)."""
    import open_clip

    source = weight_source(arch, tag)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    found = cached_weights(source, cache_dir)
    downloaded = found is None
    if found is None:
        if source.repo_id and _hub_is_offline():
            raise WeightsMissing(missing_message(
                slug, arch, tag, cache_dir, "hub access is switched off (HF_HUB_OFFLINE=1)",
                configfiles, source.describe()))  # fmt: skip
        try:
            if source.repo_id:  # huggingface_hub renames a download into place when complete
                with _hub_cache(cache_dir):
                    found = Path(open_clip.download_pretrained(
                        pretrained_cfg(arch, tag), cache_dir=str(cache_dir)))  # fmt: skip
            else:  # open_clip writes a URL download in place: download beside, then rename
                partial = Path(cache_dir) / ".partial"
                shutil.rmtree(partial, ignore_errors=True)
                cfg = pretrained_cfg(arch, tag)
                done = open_clip.download_pretrained(cfg, cache_dir=str(partial))
                found = Path(cache_dir) / os.path.basename(done)
                os.replace(done, found)
                shutil.rmtree(partial, ignore_errors=True)
        except Exception as err:  # noqa: BLE001 - any download failure gets the one message
            raise WeightsMissing(
                missing_message(slug, arch, tag, cache_dir, _short_reason(err), configfiles,
                                source.describe())
            ) from error_cause(err)
    _fetch_text_files(arch, tag, cache_dir, slug, configfiles)
    return found, downloaded


def _fetch_text_files(arch, tag, cache_dir, slug, configfiles) -> None:
    """The tokenizer / text-tower config a model reads from the hub besides its weights."""
    repos = [r for r in (tokenizer_repo(arch), text_config_repo(arch)) if r]
    if not repos:
        return
    import open_clip

    try:
        with contextlib.ExitStack() as stack:
            if _hub_is_offline():  # only what is cached already can be used
                stack.enter_context(hub_offline(cache_dir))
            else:
                stack.enter_context(_hub_cache(cache_dir))
            if tokenizer_repo(arch):
                open_clip.get_tokenizer(arch, cache_dir=str(cache_dir))
            if text_config_repo(arch):
                from transformers import AutoConfig

                AutoConfig.from_pretrained(text_config_repo(arch), cache_dir=str(cache_dir))
    except Exception as err:  # noqa: BLE001
        raise WeightsMissing(missing_message(
            slug, arch, tag, cache_dir, _short_reason(err), configfiles,
            what=f"the tokenizer / text-tower files of {', '.join(repos)}")) from error_cause(err)


def place_in_cache(file: str | os.PathLike, arch: str, tag: str,
                   cache_dir: str | os.PathLike) -> Path:
    """Copy a weight file obtained elsewhere (downloaded on another machine) to where
    :func:`cached_weights` and open_clip look for ``arch`` + ``tag`` in ``cache_dir``."""
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"weights file {file} does not exist")
    source = weight_source(arch, tag)
    cache = Path(cache_dir)
    if source.repo_id:
        # huggingface_hub's layout: refs/main names a snapshot holding the repository's files.
        repo = cache / ("models--" + source.repo_id.replace("/", "--"))
        ref = repo / "refs" / "main"
        if ref.is_file():
            commit = ref.read_text().strip()
        else:
            commit = hashlib.sha1(f"{source.repo_id}:{tag}".encode()).hexdigest()
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)
        safe = file.suffix == ".safetensors"
        names = [n for n in source.filenames if n.endswith(".safetensors") == safe]
        if not names:
            raise WeightsError(
                f"{file}: {arch} ({tag}) is published as {' or '.join(source.filenames)}; "
                f"give a file of that format, not {file.suffix or 'one without a suffix'}"
            )
        target = repo / "snapshots" / commit / names[0]
    else:
        target = cache / os.path.basename(str(source.url))
    from clustermine.h5io import atomic_path

    with atomic_path(target) as tmp:
        shutil.copyfile(file, tmp)
    return target


# --- marker files of the workflow ------------------------------------------------------------


def marker_record(arch: str, tag: str, cache_dir: str | os.PathLike,
                  weights_file: str | os.PathLike) -> dict[str, Any]:
    """What the marker of fetched weights records (no time stamps: rewriting it with the same
    weights gives the same bytes, which Snakemake's input checksums see)."""
    path = Path(weights_file)
    try:
        rel = str(path.relative_to(Path(cache_dir)))
    except ValueError:
        rel = str(path)
    return {
        "arch": arch,
        "pretrained": tag,
        "cache": str(cache_dir),
        "file": rel,
        "bytes": path.stat().st_size,
        "source": _source_of(weight_source(arch, tag), path),
    }


def _source_of(source: WeightSource, path: Path) -> str:
    """Where the cached file came from: its repository and file name, or its URL."""
    return f"hf-hub:{source.repo_id}/{path.name}" if source.repo_id else str(source.url)


def write_marker(path: str | os.PathLike, record: dict[str, Any]) -> None:
    from clustermine.h5io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_marker(path: str | os.PathLike) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
