"""The report as a list of blocks, written out as Markdown and as one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

from sweeper.report.tables import Table


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    """A paragraph; `backticks` mark code."""

    text: str


@dataclass(frozen=True)
class Image:
    path: Path
    alt: str


Block = Heading | Text | Table | Image

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; }
tr.best { background: #e6f4e6; font-weight: bold; }
code { background: #f4f4f4; padding: 0 0.2em; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def to_markdown(blocks: list[Block], base: Path) -> str:
    """Markdown with images linked relative to ``base``, the report's directory."""
    parts = []
    for block in blocks:
        match block:
            case Heading(text, level):
                parts.append(f"{'#' * level} {text}")
            case Text(text):
                parts.append(text)
            case Table():
                parts.append(block.markdown())
            case Image(path, alt):
                parts.append(f"![{alt}]({path.relative_to(base).as_posix()})")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    rows = []
    for i, row in enumerate(table.rows):
        css = ' class="best"' if i == table.best else ""
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
        rows.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _image_html(image: Image) -> str:
    # Embedded, so the page is one file that can be mailed or archived.
    data = base64.b64encode(image.path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(image.alt)}" src="data:image/png;base64,{data}">'


def to_html(blocks: list[Block], title: str) -> str:
    body = []
    for block in blocks:
        match block:
            case Heading(text, level):
                body.append(f"<h{level}>{_inline(text)}</h{level}>")
            case Text(text):
                body.append(f"<p>{_inline(text)}</p>")
            case Table():
                body.append(_table_html(block))
            case Image():
                body.append(_image_html(block))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
