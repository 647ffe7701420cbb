"""The bad-input corpus: one table of bad inputs that every input path of the project meets
(tests/test_bad_input_corpus.py; docs/architecture.md, "Bad input: one corpus, every path").

A **case** is a name, the kind of input it damages, a function that writes the bad thing into a
folder, and the expected outcome on each input path. An **input path** is one way input enters
the project (:data:`PATHS`). Outcomes:

- ``SAME``: accepted, and the same result as the well-formed input it stands for (a file under an
  odd name or behind a link: the file itself; a 16-bit or CMYK image: the 8-bit RGB image it
  shows);
- ``row(text)``: the run goes on and the input gets a row (an entry) of its own that names it,
  with an error containing ``text``: listed as unreadable, a row with an error, a warning of the
  data check naming it;
- ``error(text, status)``: refused; the message (or the HTTP answer, with ``status``) contains
  ``text``, in which ``{name}`` stands for the bad input's file name;
- ``na(reason)``: the case cannot reach that path; the reason says why in one line.

Kinds: a ``file`` case damages whatever file a path reads (an image of a folder, a bundle, a
config file, an embedding file: its name, a link to it, its bytes), so it meets every path; an
``image``, ``embeddings``, ``manifest`` or ``config`` case damages the content of that kind of
input and meets the paths that read it (the others declare it not applicable by their kind, in
:data:`PATHS`). A case's outcomes are given per path, per group of paths (``listing``,
``service``, ``files``) or for ``all``; the most specific one counts.

Adding a case: one ``case(...)`` line in :data:`CASES` (and a writer, if none fits). Adding a
path: one :class:`InputPath` in :data:`PATHS`, one parametrised test in
tests/test_bad_input_corpus.py, and an outcome for it in the cases whose group default does
not fit.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import h5py
import numpy as np
import yaml
from PIL import Image

from helpers.service import png_header

# --- outcomes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    kind: str  # same | row | error | n/a
    text: str = ""  # what the message holds ({name}: the bad input's file name); n/a: why
    status: int | None = None  # the HTTP status of the service's answer

    def message(self, written: Written) -> str:
        """The text the message must hold, ``{name}`` filled in as messages show names."""
        return self.text.replace("{name}", shown(written.path.name))

    def check(self, message: str, written: Written) -> None:
        """``message`` holds the expected text (case-insensitive: Pillow's messages vary)."""
        want = self.message(written)
        assert want.lower() in message.lower(), f"expected {want!r} in:\n{message}"
        assert "Traceback" not in message, message


SAME = Outcome("same")


def row(text: str) -> Outcome:
    return Outcome("row", text)


def error(text: str, status: int | None = None) -> Outcome:
    return Outcome("error", text, status)


def na(reason: str) -> Outcome:
    return Outcome("n/a", reason)


def shown(name: str) -> str:
    """A file name as messages show it: bytes that are not UTF-8 escaped (``caf\\xe9.png``)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


# --- input paths ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputPath:
    name: str
    reads: str  # the kind of input whose content cases it meets
    group: str  # listing | service | files: cases may give one outcome for a whole group
    what: str  # what its test runs
    not_read: str  # why cases of the other kinds do not apply: "<path> <not_read>"


PATHS = {p.name: p for p in [
    InputPath("index", "image", "listing", "clustermine.datasets.index_imagefolder, then the "
              "index file written and read back", "lists image folders only"),
    InputPath("check", "image", "listing", "clustermine.preflight.check_data (clustermine "
              "check-data) on an image folder, and its table", "is met here on image folders "
              "(on embedding files: path embeddings)"),
    InputPath("encode", "image", "listing", "the index, then clustermine.encode.encode_images "
              "(clustermine.images.load_rgb) with the tiny model", "encodes images only"),
    InputPath("score", "image", "listing", "clustermine score BUNDLE FOLDER (clustermine.deploy) "
              "with the tiny model", "scores image files here (bundles: path bundle)"),
    InputPath("service", "image", "service", "POST /score to create_app behind uvicorn "
              "(clustermine serve)", "takes image uploads only"),
    InputPath("bundle", "manifest", "files", "clustermine score BUNDLE --embeddings FILE: the "
              "bundle loaded and used", "reads a bundle folder only"),
    InputPath("config", "config", "files", "clustermine.config.load_workflow_config: loaded, "
              "validated, checked", "reads a YAML config only"),
    InputPath("embeddings", "embeddings", "files", "a type: embeddings dataset: the pre-flight "
              "check (clustermine.datacheck) and clustermine.h5io.read_image_embeddings",
              "reads an image-embedding file only"),
]}  # fmt: skip


# --- cases ----------------------------------------------------------------------------------------


@dataclass
class Target:
    """Where a case writes: ``folder`` (created, empty) receives the bad input; ``good`` is a
    well-formed input of the path (a file, or a bundle folder) outside it; ``main`` the file of
    a folder input whose bytes are damaged (a bundle's manifest); ``scratch`` a folder outside
    anything a path lists, for link targets and expected results."""

    folder: Path
    good: Path
    scratch: Path
    main: str = ""


@dataclass
class Written:
    """What a case wrote: ``path``, the bad input (what a path is given, or the entry a listing
    finds), and ``same_as``, a well-formed input whose result a ``SAME`` outcome must equal."""

    path: Path
    same_as: Path | None = None


Writer = Callable[[Target], Written]


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # file | image | embeddings | manifest | config
    write: Writer
    expect: Mapping[str, Outcome] = field(default_factory=dict)

    def outcome(self, path: str) -> Outcome:
        where = PATHS[path]
        if self.kind not in ("file", where.reads):
            return na(f"{self.kind} case; {where.name} {where.not_read}")
        for key in (path, where.group, "all"):
            if key in self.expect:
                return self.expect[key]
        raise KeyError(f"case {self.name} gives no outcome for path {path}")


def case(name: str, kind: str, write: Writer, **expect: Outcome) -> Case:
    return Case(name, kind, write, expect)


def cases_for(path: str) -> list[Case]:
    """The cases that reach ``path`` (not declared not applicable to it)."""
    return [c for c in CASES if c.outcome(path).kind != "n/a"]


def table() -> str:
    """The corpus as a Markdown table, a row per case and a column per path
    (``cd tests && python -m helpers.bad_inputs``); not-applicable cells give their reason."""

    def cell(outcome: Outcome) -> str:
        text = {"same": "same", "row": f"row: {outcome.text}", "n/a": f"n/a: {outcome.text}",
                "error": f"error{f' {outcome.status}' if outcome.status else ''}: {outcome.text}"}
        return text[outcome.kind].replace("|", "\\|").replace("\n", " ")

    lines = ["| case | kind | " + " | ".join(PATHS) + " |", "|---" * (len(PATHS) + 2) + "|"]
    for c in CASES:
        lines.append(f"| {c.name} | {c.kind} | "
                     + " | ".join(cell(c.outcome(p)) for p in PATHS) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


# --- writers: any input ---------------------------------------------------------------------------


def copy(src: Path, dest: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True)
    else:
        shutil.copyfile(src, dest)
    return dest


def renamed(stem: str | bytes) -> Writer:
    """The good input under another name (its suffix kept)."""

    def write(t: Target) -> Written:
        name = os.fsdecode(os.fsencode(stem) + os.fsencode(t.good.suffix))
        return Written(copy(t.good, t.folder / name), t.good)

    return write


def link_to_file(t: Target) -> Written:
    link = t.folder / f"link{t.good.suffix}"
    link.symlink_to(t.good.resolve(), target_is_directory=t.good.is_dir())
    return Written(link, t.good)


def link_to_folder(t: Target) -> Written:
    """The good input in a folder elsewhere, reached through a link to that folder."""
    target = t.scratch / "linked-folder"
    target.mkdir()
    copy(t.good, target / t.good.name)
    (t.folder / "linked").symlink_to(target, target_is_directory=True)
    return Written(t.folder / "linked" / t.good.name, t.good)


def dangling_link(t: Target) -> Written:
    link = t.folder / f"gone{t.good.suffix}"
    link.symlink_to(t.scratch / f"deleted{t.good.suffix}")
    return Written(link)


def link_loop(t: Target) -> Written:
    link = t.folder / f"loop{t.good.suffix}"
    link.symlink_to(link.name)  # itself
    return Written(link)


def folder_loop(t: Target) -> Written:
    """A link to the folder that holds it (beside a copy of the good input)."""
    copy(t.good, t.folder / t.good.name)
    (t.folder / "up").symlink_to(".", target_is_directory=True)
    return Written(t.folder / "up")


def damaged(change: Callable[[bytes], bytes]) -> Writer:
    """A copy of the good input whose bytes (of its ``main`` file) ``change`` rewrote."""

    def write(t: Target) -> Written:
        out = copy(t.good, t.folder / t.good.name)
        main = out / t.main if t.main else out
        main.write_bytes(change(main.read_bytes()))
        return Written(out, t.good)

    return write


# --- writers: images (the good input is an RGB PNG) -----------------------------------------------


def reference(t: Target) -> Image.Image:
    with Image.open(t.good) as img:
        return img.convert("RGB")


def image_file(name: str, make: Callable[[Image.Image], Image.Image]) -> Writer:
    """``make(reference)`` saved as ``name``; the same result as Pillow's RGB of that file."""

    def write(t: Target) -> Written:
        path = t.folder / name
        make(reference(t)).save(path)
        expected = t.scratch / f"{name}.expected.png"
        with Image.open(path) as img:
            img.convert("RGB").save(expected)
        return Written(path, expected)

    return write


def sixteen_bit(t: Target) -> Written:
    """A 16-bit grey PNG (mode I;16); the same result as the 8-bit grey image it shows."""
    grey = np.asarray(reference(t).convert("L"), dtype=np.uint16)
    path = t.folder / "deep.png"
    Image.fromarray(grey * 257).save(path)
    expected = t.scratch / "deep.expected.png"
    Image.fromarray(grey.astype(np.uint8)).convert("RGB").save(expected)
    return Written(path, expected)


def truncated_jpeg(t: Target) -> Written:
    buf = io.BytesIO()
    reference(t).save(buf, format="JPEG", quality=95)
    path = t.folder / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return Written(path)


def declared_size(width: int, height: int) -> Writer:
    """A PNG whose header declares ``width`` x ``height`` pixels (a few bytes on disk)."""

    def write(t: Target) -> Written:
        path = t.folder / "huge.png"
        path.write_bytes(png_header(width, height))
        return Written(path)

    return write


def with_alpha(img: Image.Image) -> Image.Image:
    grey = img.convert("L")
    alpha = Image.linear_gradient("L").resize(grey.size)
    return Image.merge("LA", (grey, alpha))


# --- writers: embedding files, bundles, configs ---------------------------------------------------


def h5_edit(edit: Callable[[h5py.File], None]) -> Writer:
    """A copy of the good embedding file that ``edit`` changed in place."""

    def write(t: Target) -> Written:
        out = copy(t.good, t.folder / t.good.name)
        with h5py.File(out, "a") as f:
            edit(f)
        return Written(out, t.good)

    return write


def set_rows(value: float, rows=(1, 4)) -> Callable[[h5py.File], None]:
    def edit(f):
        for r in rows:
            f["embeddings"][r, r % f["embeddings"].shape[1]] = value

    return edit


def replace(key: str, new: Callable[[np.ndarray], np.ndarray], dtype=None):
    def edit(f):
        data = new(f[key][()])
        del f[key]
        f.create_dataset(key, data=data, dtype=dtype)

    return edit


def drop_attrs(*keys: str):
    def edit(f):
        for key in keys:
            del f.attrs[key]

    return edit


def set_attr(key: str, value):
    def edit(f):
        f.attrs[key] = value

    return edit


def delete(key: str):
    def edit(f):
        del f[key]

    return edit


def manifest_edit(edit: Callable[[dict, Path], object]) -> Writer:
    """A copy of the good bundle whose manifest ``edit(manifest, bundle)`` changed."""

    def write(t: Target) -> Written:
        out = copy(t.good, t.folder / t.good.name)
        manifest = json.loads((out / "manifest.json").read_text())
        result = edit(manifest, out)
        text = result if isinstance(result, str) else json.dumps(manifest, indent=2)
        (out / "manifest.json").write_text(text)
        return Written(out, t.good)

    return write


def set_key(dotted: str, value):
    def edit(manifest, bundle):
        *parents, last = dotted.split(".")
        for key in parents:
            manifest = manifest[key]
        manifest[last] = value

    return edit


def pop_key(key: str):
    return lambda manifest, bundle: manifest.pop(key)


def detector_outside(manifest, bundle):
    """The detector file beside the bundle, unchanged (its checksum holds), named by ``../``."""
    shutil.copyfile(bundle / "detector.h5", bundle.parent / "detector.h5")
    manifest["detector"]["file"] = "../detector.h5"


def detector_linked_outside(manifest, bundle):
    """The bundle's detector file a link to an identical file outside the bundle."""
    shutil.copyfile(bundle / "detector.h5", bundle.parent / "detector.h5")
    (bundle / "detector.h5").unlink()
    (bundle / "detector.h5").symlink_to(bundle.parent / "detector.h5")


def reversed_keys(value):
    """Every mapping's keys in reverse order, recursively."""
    if isinstance(value, dict):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(v) for v in value]
    return value


def config_edit(edit: Callable[[str, dict], str]) -> Writer:
    """The good config file rewritten: ``edit(text, data)`` returns the new text."""

    def write(t: Target) -> Written:
        text = t.good.read_text(encoding="utf-8")
        out = t.folder / t.good.name
        out.write_text(edit(text, yaml.safe_load(text)), encoding="utf-8")
        return Written(out, t.good)

    return write


def dump(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# Config sections whose entries' order means something (the report's rows): kept.
ENTRY_SECTIONS = {"models", "datasets", "corpora", "idsets", "clusterers", "label_sets", "methods"}


def reordered(text: str, data: dict) -> str:
    """Every key of every mapping in reverse order; the entries of a section keep theirs."""
    out = {}
    for key in reversed(list(data)):
        value = data[key]
        if key in ENTRY_SECTIONS:
            out[key] = {slug: reversed_keys(entry) for slug, entry in value.items()}
        else:
            out[key] = reversed_keys(value)
    return dump(out)


def merged(text: str, data: dict) -> str:
    """The datasets written with a YAML merge key: every dataset after the first is
    ``<<: *first`` plus the keys in which it differs from the first."""
    data = dict(data)
    datasets = data.pop("datasets")
    first, *rest = datasets
    lines = ["datasets:", f"  {first}: &first", *indented(dump(datasets[first]), 4)]
    for slug in rest:
        assert set(datasets[slug]) == set(datasets[first]), "entries with the same keys"
        differ = {k: v for k, v in datasets[slug].items() if v != datasets[first][k]}
        lines += [f"  {slug}:", "    <<: *first", *indented(dump(differ), 4)]
    return "\n".join(lines) + "\n" + dump(data)


def indented(text: str, spaces: int) -> list[str]:
    return [" " * spaces + line for line in text.splitlines()]


def seed_twice(text: str, data: dict) -> str:
    assert "seed" not in data
    return "seed: 1\nseed: 2\n" + text


def with_key(section: str | None, key: str, value) -> Callable[[str, dict], str]:
    """A key no schema knows, in the first entry of ``section`` (None: at the top level)."""

    def edit(text: str, data: dict) -> str:
        where = data if section is None else next(iter(data[section].values()))
        where[key] = value
        return dump(data)

    return edit


def tab_indented(text: str, data: dict) -> str:
    return text.replace("\n  ", "\n\t", 1)


# --- the corpus -----------------------------------------------------------------------------------

# Links are a file-system matter: an upload is bytes, read by the client through any link.
UPLOAD = na("an upload is bytes: the client follows the link before sending them")
ONE_FILE = na("a file or bundle is opened by its path and no folder is walked: no loop can trap it")
NOT_READABLE = "{name}: not a readable image"
UTF8_ONLY = na("a config names files in YAML, which is UTF-8 text: it cannot spell such a name")
NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")


def unreadable(why: str, status: int = 422, service: str = NOT_READABLE) -> dict[str, Outcome]:
    """An image file whose bytes are bad: the index and the data check read listings, never
    pixels, and count it like any image; encoding and scoring find it unreadable."""
    return {"index": SAME, "check": SAME, "encode": row(why), "score": row(why),
            "service": error(service, status)}  # fmt: skip


CASES = [
    # file: whatever file a path reads, under an odd name, behind a link, or with bad bytes
    case("name-spaces", "file", renamed(" two  words "), all=SAME),
    case("name-nfc", "file", renamed(NFC), all=SAME),
    case("name-nfd", "file", renamed(NFD), all=SAME),
    case("name-newline-tab", "file", renamed("two\nlines\tand tab"), all=SAME),
    case("name-leading-dash", "file", renamed("-rf"), all=SAME),
    case("name-very-long", "file", renamed("l" * 240), all=SAME),
    case("name-not-utf8", "file", renamed(b"caf\xe9"), all=SAME, embeddings=UTF8_ONLY,
         listing=error("{name}: the file name is not valid UTF-8")),
    case("link-to-file", "file", link_to_file, all=SAME, service=UPLOAD),
    case("link-to-folder", "file", link_to_folder, all=SAME, service=UPLOAD),
    case("dangling-link", "file", dangling_link, listing=row("dangling symbolic link"),
         service=UPLOAD, files=error("is a dangling symbolic link (to ")),
    case("link-loop", "file", link_loop, listing=row("symbolic link loop"), service=UPLOAD,
         files=error("is a symbolic link loop")),
    case("folder-loop", "file", folder_loop, listing=row("symbolic link loop"), service=UPLOAD,
         files=ONE_FILE),
    case("zero-bytes", "file", damaged(lambda b: b""), **unreadable("cannot identify image"),
         bundle=error("manifest.json: not valid JSON"), config=error("{name}: the file is empty"),
         embeddings=error("{name}: not a readable HDF5 file")),
    case("truncated", "file", damaged(lambda b: b[: len(b) // 2]), **unreadable("truncated"),  # PNG
         bundle=error("manifest.json: not valid JSON"), config=error("{name}"),
         embeddings=error("{name}: not a readable HDF5 file")),
    case("text-with-its-suffix", "file", damaged(lambda b: b"notes, not what my name says\n"),
         **unreadable("cannot identify image"), bundle=error("manifest.json: not valid JSON"),
         config=error("{name}: a config file must be a mapping"),
         embeddings=error("{name}: not a readable HDF5 file")),
    # image: pixels that are odd, broken or too many
    case("truncated-jpeg", "image", truncated_jpeg, **unreadable("truncated")),
    case("oversized", "image", declared_size(12000, 12000),
         **unreadable("{name}: 12000x12000 = 144,000,000 pixels, above the limit", 413,
                      "{name}: 12000x12000 = 144,000,000 pixels, above the limit")),
    # Whether Pillow refuses it itself (no size in the message) or lets it open and our check
    # refuses it ("20000x20000 = 400,000,000 pixels") depends on Pillow's process-wide limit,
    # which earlier decodes in the process may have raised: the text common to both is checked.
    case("decompression-bomb", "image", declared_size(20000, 20000),
         **unreadable("400,000,000 pixels, above the limit of 89,478,485", 413,
                      "400,000,000 pixels, above the limit of 40,000,000")),
    case("sixteen-bit", "image", sixteen_bit, all=SAME),
    case("cmyk-jpeg", "image", image_file("print.jpg", lambda img: img.convert("CMYK")), all=SAME),
    case("palette", "image", image_file("few.png", lambda img: img.convert("P")), all=SAME),
    case("grey-alpha", "image", image_file("la.png", with_alpha), all=SAME),
    # embeddings: a precomputed image-embedding file (docs/file-formats.md)
    case("emb-nan-rows", "embeddings", h5_edit(set_rows(np.nan)),
         all=error("{name}: 2 of 6 embedding rows are not finite (NaN or inf), first rows [1, 4]")),
    case("emb-inf-rows", "embeddings", h5_edit(set_rows(-np.inf, (0,))),
         all=error("{name}: 1 of 6 embedding rows are not finite")),
    case("emb-one-dimensional", "embeddings", h5_edit(replace("embeddings", np.ravel)),
         all=error("{name}: embeddings must be a 2-D [N, D] array")),
    case("emb-integers", "embeddings", h5_edit(replace("embeddings", np.rint, np.int64)),
         all=error("{name}: embeddings must be floating point, got int64")),
    case("emb-float64", "embeddings", h5_edit(replace("embeddings", np.float64)), all=SAME),
    case("emb-no-model-attrs", "embeddings", h5_edit(drop_attrs("model_arch", "model_pretrained")),
         all=error("{name}: records no model_arch")),
    case("emb-other-model", "embeddings", h5_edit(set_attr("model_arch", "ViT-B-32")),
         all=error("{name}: made by model 'ViT-B-32'")),
    case("emb-dim-attr-differs", "embeddings", h5_edit(set_attr("embedding_dim", 99)),
         all=error("{name}: embeddings have dimension 8 but the file records embedding_dim=99")),
    case("emb-no-embeddings", "embeddings", h5_edit(delete("embeddings")),
         all=error("{name}: missing dataset 'embeddings'")),
    case("emb-fewer-paths", "embeddings", h5_edit(replace("paths", lambda p: p[:-1])),
         all=error("{name}: inconsistent shapes")),
    case("emb-paths-not-utf8", "embeddings", h5_edit(replace("paths", lambda p: np.array(
        [b"caf\xe9.png"] * len(p)))), all=error("{name}: dataset 'paths' holds text that is not")),
    case("emb-attr-not-utf8", "embeddings", h5_edit(set_attr("dataset", np.bytes_(b"caf\xe9"))),
         all=error("{name}: attribute 'dataset' holds text that is not UTF-8")),
    # manifest: a bundle's manifest.json (docs/deploy.md)
    case("manifest-missing-key", "manifest", manifest_edit(pop_key("detector")),
         all=error("manifest.json: key detector is missing")),
    case("manifest-wrong-type", "manifest", manifest_edit(set_key("detector.file", 5)),
         all=error("manifest.json: detector.file: 5 is not of type 'string'")),
    case("manifest-not-an-object", "manifest", manifest_edit(lambda m, b: "[1, 2]"),
         all=error("manifest.json: not a JSON object")),
    case("manifest-path-outside", "manifest", manifest_edit(detector_outside),
         all=error("detector.file '../detector.h5' is outside the bundle folder")),
    case("manifest-absolute-path", "manifest", manifest_edit(set_key("model.weights.file",
         "/etc/passwd")), all=error("model.weights.file '/etc/passwd' is outside the bundle")),
    case("manifest-file-linked-outside", "manifest", manifest_edit(detector_linked_outside),
         all=error("detector.file 'detector.h5' is outside the bundle folder")),
    case("manifest-disagrees", "manifest", manifest_edit(set_key("calibration.threshold", 0.0)),
         all=error("manifest.json: calibration.threshold: the manifest says 0.0")),
    case("manifest-reordered", "manifest", manifest_edit(lambda m, b: json.dumps(
        reversed_keys(m), indent=1)), all=SAME),
    # config: the workflow's YAML config (config/README.md)
    case("config-reordered", "config", config_edit(reordered), all=SAME),
    case("config-merge-key", "config", config_edit(merged), all=SAME),
    case("config-key-twice", "config", config_edit(seed_twice),
         all=error("{name}:2: key 'seed' is given twice in the same mapping (first on line 1)")),
    case("config-unknown-key", "config", config_edit(with_key("models", "batch_sise", 8)),
         all=error("models.m: Additional properties are not allowed ('batch_sise' was")),
    case("config-unknown-section", "config", config_edit(with_key(None, "sed", 3)),
         all=error("(top level): Additional properties are not allowed ('sed' was")),
    case("config-tab-indent", "config", config_edit(tab_indented),
         all=error("{name}: not valid YAML")),
    case("config-latin1-text", "config", damaged(lambda b: b"# caf\xe9\n" + b),
         all=error("{name}:1: not UTF-8 text (byte 0xe9)")),
    case("config-byte-order-mark", "config", damaged(lambda b: b"\xef\xbb\xbf" + b), all=SAME),
]  # fmt: skip


if __name__ == "__main__":
    print(table(), end="")
