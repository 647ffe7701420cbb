"""The ``clustermine`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _corpus(args: argparse.Namespace) -> int:
    from .corpus import wordlist_corpus, wordnet_corpus

    if args.kind == "wordnet":
        corpus = wordnet_corpus(tuple(p.strip() for p in args.pos.split(",") if p.strip()))
    else:
        if not args.path:
            raise SystemExit("clustermine corpus wordlist: give --path FILE")
        corpus = wordlist_corpus(args.path)
    out = sys.stdout
    for name in corpus.names:
        out.write(name + "\n")
    return 0


def _describe_h5(path: str) -> dict:
    import h5py

    from .h5io import read_attrs

    datasets = {}

    def visit(name, obj):  # every dataset, in groups too (score files: one group per dataset)
        if isinstance(obj, h5py.Dataset):
            datasets[name] = {"shape": list(obj.shape), "dtype": str(obj.dtype)}

    with h5py.File(path, "r") as f:
        f.visititems(visit)
        attrs = read_attrs(f)
    return {"file": path, "datasets": datasets, "attrs": attrs}


def _info(args: argparse.Namespace) -> int:
    from .h5io import EmbeddingFileError

    try:
        info = _describe_h5(args.file)
    except (OSError, EmbeddingFileError) as err:
        print(f"clustermine info: {args.file}: cannot read ({err})", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    attrs = info["attrs"]
    emb = info["datasets"].get("embeddings", {}).get("shape", [])
    print(f"file:        {args.file}")
    print(f"kind:        {attrs.get('kind', '?')}")
    print(f"model:       {attrs.get('model_arch', '?')} ({attrs.get('model_pretrained', '?')})")
    if attrs.get("random_weights"):
        print("             RANDOM WEIGHTS: embeddings are meaningless")
    for key in ("dataset", "corpus", "prompts"):
        if key in attrs:
            print(f"{key + ':':<13}{attrs[key]}")
    if len(emb) == 2:
        print(f"N x D:       {emb[0]} x {emb[1]}")
    unreadable = attrs.get("unreadable_files")
    if isinstance(unreadable, list):
        print(f"unreadable:  {len(unreadable)} files")
        for f in unreadable[:20]:
            print(f"  {f}")
    print("datasets:")
    for name, d in info["datasets"].items():
        print(f"  {name:<24}{d['dtype']:<10}{d['shape']}")
    print("attributes:")
    for key in sorted(attrs):
        if key != "unreadable_files":
            value = str(attrs[key])
            print(f"  {key}: {value if len(value) < 200 else value[:197] + '...'}")
    return 0


SCHEMA_FILE = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def _workflow_config(args: argparse.Namespace):
    """The config as the workflow reads it (same merging, validation and checks), from
    ``--configfile`` files and ``--config key=value`` overrides (values are YAML)."""
    import yaml

    from .config import load_workflow_config
    from .datasets import class_names_available

    overrides = {}
    for item in args.config or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--config {item!r}: expected key=value")
        overrides[key] = yaml.safe_load(value)
    return load_workflow_config(args.configfile, SCHEMA_FILE, overrides, class_names_available)


def _fetch(args: argparse.Namespace) -> int:
    from . import weights

    cfg = _workflow_config(args)
    cache = cfg.weights_cache()
    slugs = args.model or list(cfg.models)
    unknown = [s for s in slugs if s not in cfg.models]
    if unknown:
        raise ValueError(f"--model {unknown[0]}: not declared under models ({sorted(cfg.models)})")
    if args.file:
        if len(slugs) != 1:
            raise ValueError("--file needs exactly one --model (whose weights the file holds)")
        spec = cfg.models[slugs[0]]
        if not weights.is_pretrained_tag(spec.get("pretrained")):
            raise ValueError(f"--file: models.{slugs[0]} has no pretrained tag to place it under")
        target = weights.place_in_cache(args.file, spec["arch"], spec["pretrained"], cache)
        print(f"{slugs[0]}: {args.file} placed in the weight cache as {target}")
    failed = []
    for slug in slugs:
        spec = cfg.models[slug]
        pretrained = spec.get("pretrained")
        if not weights.is_pretrained_tag(pretrained):
            what = "random weights" if weights.is_random(pretrained) else "local checkpoint"
            print(f"{slug}: {spec['arch']} ({what}): nothing to fetch")
            continue
        try:
            path, downloaded = weights.fetch(spec["arch"], pretrained, cache, slug, args.configfile)
        except weights.WeightsError as err:
            failed.append(slug)
            print(f"{slug}: error: {err}", file=sys.stderr)
            continue
        size = path.stat().st_size / 2**20
        state = "downloaded" if downloaded else "already in the cache"
        print(f"{slug}: {spec['arch']} ({pretrained}): {state}: {path} ({size:,.1f} MiB)")
    if failed:
        print(f"clustermine fetch: {len(failed)} of {len(slugs)} models failed: "
              f"{', '.join(failed)}", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _check_data(args: argparse.Namespace) -> int:
    from .preflight import check_data, checked_specs

    cfg = _workflow_config(args)
    datasets, corpora = checked_specs(cfg)
    result = check_data(datasets, corpora, cfg.max_unreadable_fraction(), cfg.idsets)
    print(result.tsv() if args.tsv else result.markdown(), end="")
    if not result.ok:
        print(f"clustermine check-data: errors:\n{result.problems()}", file=sys.stderr)
        return 1
    return 0


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configfile", action="append", required=True, metavar="FILE",
                   help="the workflow's config file(s), merged in order as Snakemake does")
    p.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="override a top-level key, as snakemake --config (e.g. data_root=/data)")


def _add_preflight_commands(sub) -> None:
    """``fetch`` and ``check-data``: what a cluster run needs before GPUs start
    (docs/slurm.md)."""
    p = sub.add_parser("fetch", help="download the configured models' pretrained weights into "
                       "the weight cache (run where there is internet access)")
    _add_config_arguments(p)
    p.add_argument("--model", action="append", metavar="SLUG", help="only these models")
    p.add_argument("--file", help="place this weight file (downloaded elsewhere) in the cache "
                   "under the tag of the one --model")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("check-data", help="check every dataset and word list of a config "
                       "(folders, file lists, counts) from directory listings")
    _add_config_arguments(p)
    p.add_argument("--tsv", action="store_true", help="print the table as TSV")
    p.set_defaults(func=_check_data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clustermine", description="Label-free visual OOD detection with CLIP models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("corpus", help="print a text corpus, one name per line")
    p.add_argument("kind", choices=["wordnet", "wordlist"])
    p.add_argument("--pos", default="n,a", help="WordNet parts of speech: n, a or n,a")
    p.add_argument("--path", help="word list file (for wordlist)")
    p.set_defaults(func=_corpus)

    p = sub.add_parser("info", help="describe a clustermine HDF5 file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_info)

    _add_deploy_commands(sub)
    _add_preflight_commands(sub)
    return parser


def _add_deploy_commands(sub) -> None:
    """``score``, ``export`` and ``serve``: the detector as a product (docs/deploy.md)."""
    from .deploy.commands import add_commands

    add_commands(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except BrokenPipeError:
        return 0
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"clustermine {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
