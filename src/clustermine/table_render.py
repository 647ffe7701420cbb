"""Result tables (:class:`Table`: a DataFrame plus which columns are better high or low) and
their three renderings: TSV for programs, Markdown for pasting, HTML for the Snakemake report.
Percent columns are shown ×100; the best value of a column within each group of rows is
**bold** in Markdown and HTML, and listed in a last ``best`` column of the TSV."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clustermine.atomic import atomic_path


def better(column: str) -> str:
    """Whether a metric column is better high ("max") or low ("min"): false-positive rates
    and drops are better low, everything else (AUROC, overlap, F1, similarities, clustering
    agreement) high."""
    low = column.endswith("FPR95") or column == "relative drop"
    return "min" if low else "max"


@dataclass
class Table:
    """A result table: ``frame`` holds raw values (fractions for percent columns)."""

    name: str
    title: str
    frame: pd.DataFrame
    better: dict[str, str] = field(default_factory=dict)  # column → "max" | "min"
    percent: tuple[str, ...] = ()
    counts: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ("model",)
    note: str | None = None
    description: str = ""

    def best_mask(self) -> pd.DataFrame:
        """True where a value is the best of its column within its group (ties all marked)."""
        mask = pd.DataFrame(False, index=self.frame.index, columns=self.frame.columns)
        if self.note or self.frame.empty:
            return mask
        groups = [c for c in self.group_by if c in self.frame.columns]
        parts = self.frame.groupby(groups, sort=False) if groups else [(None, self.frame)]
        for _, part in parts:
            for col, how in self.better.items():
                if col not in part.columns:
                    continue
                vals = pd.to_numeric(part[col], errors="coerce")
                if vals.notna().sum() < 2:  # a lone value is not "best" of anything
                    continue
                if vals.max() - vals.min() <= 1e-12:  # all tied: nothing stands out
                    continue
                target = vals.max() if how == "max" else vals.min()
                hit = np.isclose(vals, target, rtol=0, atol=1e-12) & vals.notna()
                mask.loc[part.index[hit.to_numpy()], col] = True
        return mask


def _formatted(table: Table, decimals: int) -> pd.DataFrame:
    """Strings for people: percent columns ×100, counts as integers, '–' for missing."""
    out = pd.DataFrame(index=table.frame.index)
    for col in table.frame.columns:
        vals = table.frame[col]
        if col in table.percent:
            out[col] = [("–" if pd.isna(v) else f"{100 * float(v):.{decimals}f}") for v in vals]
        elif col in table.counts:
            out[col] = ["–" if pd.isna(v) else str(round(float(v))) for v in vals]
        elif pd.api.types.is_numeric_dtype(vals):
            out[col] = ["–" if pd.isna(v) else f"{float(v):.{decimals + 1}f}" for v in vals]
        else:
            out[col] = ["–" if v is None or (isinstance(v, float) and math.isnan(v))
                        else str(v) for v in vals]
    return out


def table_tsv(table: Table) -> str:
    if table.note:
        return "note\n" + table.note.replace("\t", " ").replace("\n", " ") + "\n"
    frame = table.frame.copy()
    for col in table.percent:
        frame[col] = frame[col].astype(float) * 100.0
    for col in table.counts:
        frame[col] = frame[col].round().astype("Int64")
    mask = table.best_mask()
    frame["best"] = [";".join(c for c in mask.columns if mask.at[i, c]) for i in mask.index]
    return frame.to_csv(sep="\t", index=False, float_format="%.4f", na_rep="nan",
                        lineterminator="\n")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    lines = [f"### {table.title}", ""]
    if table.note:
        return "\n".join(lines + [f"_No data: {table.note}._", ""])
    if table.description:
        lines += [table.description + " Values in percent except counts; best per column "
                  "(per model) in bold.", ""]
    shown, mask = _formatted(table, 2), table.best_mask()
    numeric = [pd.api.types.is_numeric_dtype(table.frame[c]) for c in shown.columns]
    lines.append("| " + " | ".join(_md_cell(str(c)) for c in shown.columns) + " |")
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    for i in shown.index:
        cells = [f"**{v}**" if mask.at[i, c] else v for c, v in shown.loc[i].items()]
        lines.append("| " + " | ".join(_md_cell(x) for x in cells) + " |")
    return "\n".join(lines) + "\n"


_HTML_STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:90%}"
    "th,td{border:1px solid #ccc;padding:3px 6px}td.n{text-align:right}"
    "th{background:#f0f0f0}td.best{font-weight:bold;background:#e8f4e8}"
)


def table_html(table: Table) -> str:
    esc = html.escape
    head = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(table.title)}"
            f"</title><style>{_HTML_STYLE}</style></head><body>\n<h3>{esc(table.title)}</h3>\n")
    if table.note:
        return head + f"<p><em>No data: {esc(table.note)}.</em></p>\n</body></html>\n"
    shown, mask = _formatted(table, 2), table.best_mask()
    parts = [head]
    if table.description:
        parts.append(f"<p>{esc(table.description)} Values in percent except counts; best per "
                     "column (per model) in bold.</p>\n")
    parts.append("<table>\n<tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in shown.columns)
                 + "</tr>\n")
    for i in shown.index:
        cells = []
        for c, v in shown.loc[i].items():
            cls = ["n"] if pd.api.types.is_numeric_dtype(table.frame[c]) else []
            cls += ["best"] if mask.at[i, c] else []
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{esc(v)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>\n")
    return "".join(parts) + "</table>\n</body></html>\n"


RENDERERS: dict[str, Callable[[Table], str]] = {
    "tsv": table_tsv, "md": table_markdown, "html": table_html,
}


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_table(table: Table, paths: Mapping[str, str | os.PathLike]) -> None:
    """Write ``table`` in each format named in ``paths`` (``tsv``, ``md``, ``html``)."""
    for fmt, path in paths.items():
        if fmt not in RENDERERS:
            raise ValueError(f"unknown table format {fmt!r}; known: {sorted(RENDERERS)}")
        write_text(path, RENDERERS[fmt](table))
