"""A gallery (clustermine.gallery) as one self-contained HTML page: thumbnails are data URIs
in its style sheet, so the page opens from the Snakemake report, a mail or a laptop alike."""

from __future__ import annotations

import html
import os

from clustermine.atomic import atomic_path
from clustermine.gallery import Gallery
from clustermine.gallery_parts import Card, Section, Tile

KINDS = {
    "clusters": "Clusters and their votes",
    "labels": "Mined positives",
    "errors": "What each detector gets wrong",
}

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{display:inline;font-size:1.15em}h3{font-size:1em;margin:0 0 .2em}
details{border-top:1px solid #ddd;padding:.4em 0}summary{cursor:pointer}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin-top:.6em}
.card{border:1px solid #ccc;border-radius:4px;padding:.5em;background:#fafafa}
.facts{color:#555;font-size:.9em;margin:0 0 .3em}.marks{color:#b00;font-size:.9em;margin:0 0 .3em}
.tiles{display:flex;flex-wrap:wrap;gap:.35em;max-width:560px}
figure{margin:0;width:88px;font-size:.72em;color:#444;overflow-wrap:anywhere}
.img{width:72px;height:72px;background:#eee center/contain no-repeat;border:1px solid #bbb;
image-rendering:pixelated}
.none{display:flex;align-items:center;justify-content:center;text-align:center;color:#900}
nav li{margin:.1em 0}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _tile(tile: Tile) -> str:
    if tile.css is not None:
        image = f'<div class="img {tile.css}"></div>'
    else:
        image = f'<div class="img none">{_e(tile.problem or "no image")}</div>'
    lines = "<br>".join(_e(line) for line in tile.caption if line)
    return f'<figure title="{_e(tile.path)}">{image}<figcaption>{lines}</figcaption></figure>'


def _card(card: Card) -> str:
    marks = f'<p class="marks">{_e("; ".join(card.marks))}</p>' if card.marks else ""
    return (
        f'<div class="card"><h3>{_e(card.title)}</h3>'
        f'<p class="facts">{_e(" · ".join(card.facts))}</p>{marks}'
        f'<div class="tiles">{"".join(_tile(t) for t in card.tiles)}</div></div>'
    )


def _anchor(i: int) -> str:
    return f"s{i}"


def _section(i: int, section: Section, open_: bool) -> str:
    return (
        f'<details id="{_anchor(i)}"{" open" if open_ else ""}><summary><h2>'
        f"{_e(section.title)}</h2></summary><p>{_e(section.summary)}</p>"
        f'<div class="cards">{"".join(_card(c) for c in section.cards)}</div></details>'
    )


def render(gallery: Gallery) -> str:
    """The page: a contents list by kind, then every section (the first of each kind open)."""
    parts, nav, first = [], [], set()
    for kind, heading in KINDS.items():
        items = [(i, s) for i, s in enumerate(gallery.sections) if s.kind == kind]
        if not items:
            continue
        links = "".join(
            f'<li><a href="#{_anchor(i)}">{_e(s.title)}</a> '
            + (f"({len(s.cards)})" if s.cards else f"— {_e(s.summary)}")
            + "</li>"
            for i, s in items
        )
        nav.append(f"<li>{_e(heading)}<ul>{links}</ul></li>")
        parts.append(f"<h2>{_e(heading)}</h2>")
        for i, s in items:
            parts.append(_section(i, s, kind not in first))
            first.add(kind)
    settings = ", ".join(f"{k} {v}" for k, v in gallery.settings.items())
    title = f"Gallery: {gallery.model}, ID set {gallery.idset}"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}'
        f"</title><style>{STYLE}{gallery.css}</style></head><body><h1>{_e(title)}</h1>"
        "<p>Thumbnails of the images behind the mined labels and the detectors' mistakes. "
        "Hover over an image for its path. Captions: <i>true</i> is the image's ground-truth "
        "class; <i>pos</i> / <i>neg</i> the detector's nearest positive and negative label.</p>"
        f"<nav><ul>{''.join(nav)}</ul></nav>{''.join(parts)}"
        f"<p><small>{gallery.thumbnails} thumbnails; {_e(settings)}.</small></p>"
        "</body></html>\n"
    )


def write_gallery(path: str | os.PathLike, gallery: Gallery) -> None:
    """Write the page atomically (a killed job leaves no half page)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(render(gallery))
