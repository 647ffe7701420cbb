"""The documentation's plugin tables, generated from the catalog.

A docs page holds a table between ``<!-- catalog:<kind> -->`` and ``<!-- /catalog:<kind> -->``
(kind: miner, score or clusterer); ``python -m clustermine.catalog.docs`` rewrites every such
table under ``docs/`` and a test fails while one is out of date, so the tables cannot drift
from the declarations.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from clustermine import catalog


def _value(value) -> str:
    return "null" if value is None else json.dumps(value) if isinstance(value, str) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _params(plugin: catalog.Plugin) -> str:
    parts = [f"`{p.name}: {_value(p.default)}`" for p in plugin.params]
    parts += [f"`{p.name}`{' (required)' if p.required else ''}" for p in plugin.input_keys]
    return ", ".join(parts) or "–"


def table(kind: str) -> str:
    """The Markdown table of every plugin of ``kind``, then what each parameter means."""
    selector = catalog.SELECTOR_KEYS[kind]
    lines = [
        f"| `{selector}` | what it does | needs | parameters (defaults) | source |",
        "|---|---|---|---|---|",
    ]
    meanings: dict[str, list[str]] = {}
    for name, plugin in catalog.REGISTRIES[kind].items():
        needs = ", ".join(catalog.need_words(kind, plugin.needs)) or "–"
        lines.append(
            f"| `{name}` | {_cell(plugin.summary)} | {needs} | {_params(plugin)} | "
            f"{_cell(plugin.source)} |"
        )
        for p in (*plugin.params, *plugin.input_keys):
            meaning = meanings.setdefault(p.name, [])
            if p.help not in meaning:
                meaning.append(p.help)
    lines += ["", "| parameter | meaning |", "|---|---|"]
    lines += [f"| `{n}` | {_cell('; '.join(m))} |" for n, m in sorted(meanings.items())]
    return "\n".join(lines)


def _pattern(kind: str) -> re.Pattern:
    return re.compile(
        rf"(<!-- catalog:{kind} -->\n)(.*?)(<!-- /catalog:{kind} -->)", flags=re.DOTALL
    )


def render(text: str) -> str:
    """``text`` with every catalog table replaced by its current version."""
    for kind in catalog.KINDS:
        text = _pattern(kind).sub(lambda m: m.group(1) + table(kind) + "\n" + m.group(3), text)
    return text


def stale_docs(folder: str | Path) -> list[str]:
    """Markdown files under ``folder`` whose catalog tables are out of date."""
    return [
        str(path)
        for path in sorted(Path(folder).rglob("*.md"))
        if render(text := path.read_text(encoding="utf-8")) != text
    ]


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv or sys.argv[1:] or ["docs"])[0])
    for name in stale_docs(folder):
        path = Path(name)
        path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
