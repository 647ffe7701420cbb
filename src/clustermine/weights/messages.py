"""The one message of weights that are missing: which model, where they were looked for, why
downloading failed and the command that fetches them."""

from __future__ import annotations

import os

from clustermine.weights.offline import hub_is_offline, is_offline_error


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


def short_reason(err: BaseException) -> str:
    """Why a download failed, in one line (the first line of the library's message)."""
    if is_offline_error(err) and hub_is_offline():
        return "hub access is switched off (HF_HUB_OFFLINE=1)"
    text = str(err).strip().splitlines()
    first = next((line for line in text if line.strip()), type(err).__name__)
    return first if len(first) < 300 else first[:297] + "..."
