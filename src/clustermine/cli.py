"""The ``clustermine`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys


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
    return parser


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
