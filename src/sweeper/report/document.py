"""The report as a list of blocks, written out as Markdown and, through the jinja2 template
``templates/report.html.j2``, as one self-contained HTML page."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from sweeper.report.tables import Table


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    """A paragraph; `backticks` mark code, **double stars** strong text."""

    text: str


@dataclass(frozen=True)
class Image:
    path: Path
    alt: str


Block = Heading | Text | Table | Image


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


def _inline(text: str) -> Markup:
    """Escaped text with `backticks` as <code> and **double stars** as <strong>, as
    Markdown shows them."""
    html = re.sub(r"`([^`]*)`", r"<code>\1</code>", str(escape(text)))
    return Markup(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html))


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("sweeper.report", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["inline"] = _inline


def _context(block: Block) -> dict[str, Any]:
    match block:
        case Heading(text, level):
            return {"kind": "heading", "text": text, "level": level}
        case Text(text):
            return {"kind": "text", "text": text}
        case Table():
            return {
                "kind": "table",
                "headers": [str(c) for c in block.frame.columns],
                "rows": block.frame.astype(str).to_numpy().tolist(),
                "best": -1 if block.best is None else block.best,
                "muted": block.muted,
            }
        case Image(path, alt):
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            return {"kind": "image", "alt": alt, "data": data}


def to_html(blocks: list[Block], title: str) -> str:
    return _ENV.get_template("report.html.j2").render(
        title=title, blocks=[_context(b) for b in blocks]
    )
