"""``clustermine score``, ``clustermine export`` and ``clustermine serve`` (docs/deploy.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from clustermine.drift import DEFAULT_LEVEL, DEFAULT_WINDOW  # numpy only

# clustermine.detectors.calibration.DEFAULT_ACCEPTANCE; not imported: it would import torch
# for every clustermine command.
DEFAULT_ACCEPTANCE = 0.95

COLUMNS = ("path", "score", "p_value", "ood", "error")
LABEL_COLUMNS = ("top_positive", "top_positive_cosine", "top_negative", "top_negative_cosine")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the three subcommands on the ``clustermine`` parser."""
    p = sub.add_parser(
        "score",
        help="score new images (or an embedding file) with a detector file or bundle",
        description="Score images with a detector: one row per image (path, score, p_value, "
        "ood, error), then a summary on stderr. Unreadable images, and images whose embedding or "
        "score is NaN or infinite, get an error in their row.",
    )
    p.add_argument("detector", help="detector file (results/{model}/detectors/...h5) or bundle")
    p.add_argument("paths", nargs="*", help="image files, folders (recursive) or file lists "
                   "(.txt/.lst/.list: one path per line)")  # fmt: skip
    p.add_argument(
        "--embeddings",
        metavar="FILE.h5",
        help="score a precomputed image-embedding file instead (its model is checked)",
    )
    p.add_argument("-o", "--output", help="write the rows here (default: standard output)")
    p.add_argument(
        "--format",
        choices=["tsv", "jsonl"],
        help="row format (default: jsonl for a .jsonl/.json output, else tsv)",
    )
    p.add_argument(
        "--top-labels",
        action="store_true",
        help="add the best matching positive and negative label of each image",
    )
    _decision_args(p)
    _runtime_args(p)
    p.add_argument("--batch-size", type=int, default=256, help="images per model call (256)")
    p.add_argument("--workers", type=int, default=0, help="image-decoding processes (0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=score_command)

    p = sub.add_parser("export", help="write a detector as a self-contained bundle folder")
    p.add_argument("detector", help="detector file")
    p.add_argument("out_dir", help="bundle folder to write")
    p.add_argument("--checkpoint", help="the model's weights file, if not where recorded")
    p.add_argument(
        "--no-weights",
        action="store_true",
        help="record the open_clip pretrained tag only, without its weights",
    )
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    p.set_defaults(func=export_command)

    p = sub.add_parser("serve", help="serve a detector over HTTP (POST /score, GET /info)")
    p.add_argument("detector", help="detector file or bundle folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (8000)")
    _decision_args(p)
    _runtime_args(p)
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="per image file (20)")
    p.add_argument("--max-images", type=int, default=64, help="per request (64)")
    p.add_argument("--max-batch", type=int, default=64, help="images per model call (64)")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a model call waits for more images (5)",
    )
    p.set_defaults(func=serve_command)

    p = sub.add_parser(
        "remine",
        help="re-mine a detector's positives from unlabeled deployment images",
        description="Cluster deployment images, let each cluster vote its zero-shot name over "
        "the detector's corpus, and fit a detector of the same score on the voted names, "
        "calibrated on a held-out share of the images; writes the new detector and a concept "
        "diff (added, removed, kept) to review (docs/deploy.md, 'Re-mining').",
    )
    p.add_argument("detector", help="detector file or bundle folder")
    p.add_argument("paths", nargs="+", help="deployment images: files, folders, file lists")
    p.add_argument("-o", "--output", required=True, help="the new detector file (.h5)")
    p.add_argument("--diff", help="the concept diff (TSV; default: OUTPUT without .h5 + "
                   ".diff.tsv)")  # fmt: skip
    p.add_argument("--apply", metavar="DIFF.tsv", help="a reviewed concept diff: its added and "
                   "kept names are the positives")  # fmt: skip
    p.add_argument("--clusters", type=int, help="C (default: twice the detector's positives, "
                   "at most one per 10 images)")  # fmt: skip
    p.add_argument("--holdout", type=float, default=0.2, help="share that calibrates (0.2)")
    p.add_argument("--guard-p", type=float, default=0.01, help="leave out images the current "
                   "detector gives a p-value at or below this (0.01)")  # fmt: skip
    p.add_argument("--no-guard", action="store_true", help="keep every image")
    p.add_argument("--min-support", type=int, default=5, help="images a new name needs (5)")
    p.add_argument("--seed", type=int, default=0)
    _runtime_args(p)
    p.add_argument("--batch-size", type=int, default=256, help="images per model call (256)")
    p.add_argument("--workers", type=int, default=0, help="image-decoding processes (0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=remine_command, threshold=None, id_acceptance=DEFAULT_ACCEPTANCE,
                   drift_window=DEFAULT_WINDOW, drift_level=DEFAULT_LEVEL)  # fmt: skip


def _decision_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threshold",
        type=float,
        help="flag images scoring below this as OOD (default: from the calibration)",
    )
    p.add_argument(
        "--id-acceptance",
        type=float,
        default=DEFAULT_ACCEPTANCE,
        help="share of held-out ID images the threshold accepts (0.95)",
    )
    p.add_argument("--drift-window", type=int, default=DEFAULT_WINDOW,
                   help=f"images per drift test (docs/deploy.md, 'Drift'; {DEFAULT_WINDOW})")
    p.add_argument("--drift-level", type=float, default=DEFAULT_LEVEL,
                   help="false-alarm probability of one drift window of ID images "
                   f"({DEFAULT_LEVEL})")  # fmt: skip


def _runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (a GPU when present), cpu, cuda:1")
    p.add_argument("--checkpoint", help="the model's weights file, if not where recorded")
    p.add_argument(
        "--weights-cache",
        help="the workflow's weight cache of open_clip tags "
        "(default: resources/weights of the workflow's folder, if there is one)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse images with more pixels (default: 89,478,485; serve: 40,000,000)",
    )


def _load(args: argparse.Namespace, **extra: Any):
    from clustermine.deploy.detector import load_deployed_detector

    options = {"max_pixels": args.max_pixels} if args.max_pixels else {}
    return load_deployed_detector(
        args.detector,
        checkpoint=args.checkpoint,
        weights_cache=args.weights_cache,
        device=None if args.device == "auto" else args.device,
        threshold=args.threshold,
        id_acceptance=args.id_acceptance,
        drift_window=args.drift_window,
        drift_level=args.drift_level,
        **options,
        **extra,
    )


# --- score -----------------------------------------------------------------------------------


def score_command(args: argparse.Namespace) -> int:
    from clustermine.deploy.inputs import gather_paths
    from clustermine.deploy.output import writing
    from clustermine.atomic import atomic_path
    from clustermine.h5io import read_image_embeddings

    if bool(args.paths) == bool(args.embeddings):
        raise SystemExit("clustermine score: give image paths or --embeddings FILE.h5, not both")
    det = _load(args, batch_size=args.batch_size, workers=args.workers)
    if args.embeddings and det.encoder.extra_features:
        raise SystemExit(
            f"clustermine score: {args.detector}: score {det.detector.name!r} also reads the "
            f"{' and the '.join(det.encoder.extra_features)} of each image: give the images, "
            "not --embeddings"
        )
    if not args.embeddings:
        det.model  # noqa: B018 - built before the clock starts: the rate is the encoding's
    t0 = time.perf_counter()
    if args.embeddings:
        images = read_image_embeddings(args.embeddings)
        out = det.predict(
            embeddings=images.embeddings, attrs=images.attrs, source=args.embeddings,
            names=images.paths, top_labels=args.top_labels,
        )  # fmt: skip
    else:
        paths = gather_paths(args.paths)
        if not paths:
            raise SystemExit(f"clustermine score: no images found in {args.paths}")
        out = det.predict(paths, top_labels=args.top_labels, progress=not args.no_progress)
    seconds = time.perf_counter() - t0
    fmt = args.format or ("jsonl" if (args.output or "").endswith((".jsonl", ".json")) else "tsv")
    rows = out.rows()
    if args.output:
        # Written whole or not at all; a full disk is one line naming the file.
        with writing(args.output), atomic_path(args.output) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                write_rows(f, rows, fmt, args.top_labels)
    else:
        write_rows(sys.stdout, rows, fmt, args.top_labels)
        sys.stdout.flush()
    print(summary_line(det, out, seconds, bool(args.embeddings)), file=sys.stderr)
    if det.drift is not None:
        print(det.drift.summary(), file=sys.stderr)
    return 0


def write_rows(f: IO[str], rows: list[dict[str, Any]], fmt: str, top_labels: bool) -> None:
    if fmt == "jsonl":
        for row in rows:
            f.write(json.dumps(row) + "\n")
        return
    columns = COLUMNS + (LABEL_COLUMNS if top_labels else ())
    f.write("\t".join(columns) + "\n")
    for row in rows:
        flat = dict(row)
        for key in ("top_positive", "top_negative"):
            label = row.get(key)
            flat[key] = label["name"] if label else None
            flat[f"{key}_cosine"] = label["cosine"] if label else None
        f.write("\t".join(_cell(flat.get(c)) for c in columns) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def summary_line(det, out, seconds: float, embeddings: bool) -> str:
    info = det.describe()
    what = "embeddings" if embeddings else "images"
    rate = len(out) / seconds if seconds > 0 else float("inf")
    parts = [
        f"scored {len(out) - out.num_errors} of {len(out)} {what} with "
        f"{info['method'] or info['score']} (ID set {info['idset']}, model "
        f"{info['model']['arch']}) in {seconds:.1f} s ({rate:.0f} {what}/s)"
    ]
    if out.threshold is None:
        parts.append("no threshold (the detector has no calibration; pass --threshold)")
    else:
        cal = det.calibration
        how = (
            f"accepting {det.id_acceptance:.0%} of held-out ID set {cal.dataset}"
            if info["threshold_from"] == "calibration" else "given"
        )  # fmt: skip
        parts.append(f"{out.num_ood} flagged OOD at threshold {out.threshold:.6g} ({how})")
    if out.num_errors:
        parts.append(f"{out.num_errors} not scored (see their error column)")
    return "; ".join(parts)


# --- export, serve ------------------------------------------------------------------------------


def export_command(args: argparse.Namespace) -> int:
    from clustermine.deploy.bundle import export_bundle

    manifest = export_bundle(
        args.detector, args.out_dir, checkpoint=args.checkpoint, weights=not args.no_weights,
        force=args.force,
    )  # fmt: skip
    model, det = manifest["model"], manifest["detector"]
    weights = model["weights"]
    print(
        f"exported {det['method'] or det['score']} (ID set {det['idset']}, model {model['arch']}"
        f", {manifest['labels']['num_positives']} positives) to {args.out_dir}; weights: "
        + (f"{weights['file']} ({weights['bytes'] / 2**20:.1f} MiB)" if weights
           else f"open_clip tag {model['pretrained']} (not included)"),
        file=sys.stderr,
    )  # fmt: skip
    return 0


def remine_command(args: argparse.Namespace) -> int:
    from clustermine.deploy.inputs import gather_paths
    from clustermine.deploy.output import writing
    from clustermine.remine import (
        RemineSettings,
        corpus_of,
        read_diff_positives,
        remine,
        write_diff,
    )

    settings = RemineSettings(
        clusters=args.clusters, holdout=args.holdout,
        guard_p=None if args.no_guard else args.guard_p, min_support=args.min_support,
        seed=args.seed,
    )  # fmt: skip
    positives = read_diff_positives(args.apply) if args.apply else None
    out = args.output
    diff_path = args.diff or (out[:-3] if out.endswith(".h5") else out) + ".diff.tsv"
    if Path(out).resolve() == Path(args.detector).resolve():
        raise SystemExit("clustermine remine: -o names the detector itself; write the new "
                         "detector to another file and keep the old one")  # fmt: skip
    if args.apply and Path(args.apply).resolve() == Path(diff_path).resolve():
        raise SystemExit(f"clustermine remine: --apply {args.apply} would be overwritten by the "
                         "new diff: give --diff another file")  # fmt: skip
    det = _load(args, batch_size=args.batch_size, workers=args.workers)
    corpus_of(det.detector)  # refused before any image is encoded
    paths = gather_paths(args.paths)
    if not paths:
        raise SystemExit(f"clustermine remine: no images found in {args.paths}")
    emb, errors = det.embed(paths, progress=not args.no_progress)
    ok = [i for i, e in enumerate(errors) if not e]
    if len(ok) < len(paths):
        print(f"remine: {len(paths) - len(ok)} of {len(paths)} images could not be read; "
              "left out", file=sys.stderr)  # fmt: skip
    result = remine(det.detector, emb[ok], [paths[i] for i in ok], settings, positives,
                    acceptance=det.id_acceptance, source=det.source)  # fmt: skip
    with writing(out):
        result.detector.save(out)
    with writing(diff_path):
        write_diff(diff_path, result.diff)
    r = result.record
    changes = {k: sum(c.change == k for c in result.diff) for k in ("added", "removed", "kept")}
    print(
        f"re-mined {r['old_positives']} -> {r['new_positives']} positives from {r['mined']} of "
        f"{r['images']} images ({r['clusters']} clusters; {r['left_out_by_guard']} left out by "
        f"the guard, {r['held_out']} held out to calibrate): {changes['added']} added, "
        f"{changes['removed']} removed, {changes['kept']} kept"
        + (" (as applied from " + args.apply + ")" if args.apply else "")
        + f"; the old detector accepts {r['old_accepts']} of the {r['images']} images, the new "
        f"one {r['new_accepts']}; wrote {out} and {diff_path}",
        file=sys.stderr,
    )  # fmt: skip
    return 0


def serve_command(args: argparse.Namespace) -> int:
    import logging

    from clustermine.deploy.service import Limits, serve

    limits = Limits(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_images=args.max_images,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        **({"max_pixels": args.max_pixels} if args.max_pixels else {}),
    )
    det = _load(args, batch_size=args.max_batch)
    logging.getLogger("clustermine").setLevel(logging.INFO)
    serve(det, args.host, args.port, limits)
    return 0
