"""The report as a list of sections of plain blocks, so HTML and Markdown say the same things.

A block is a paragraph, a table, a figure (a PNG and the table it draws, for Markdown and for
when matplotlib is missing) or a gallery (thumbnails with captions).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Cell:
    """A table cell; ``tone`` colours it in HTML (good | bad | muted), ``title`` is its hover text."""

    text: str
    tone: str | None = None
    title: str | None = None


@dataclass
class Paragraph:
    text: str
    tone: str | None = None


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell | str]]
    caption: str | None = None


@dataclass
class Figure:
    png: bytes | None          # None: no matplotlib here; the table stands in
    alt: str
    table: Table
    note: str | None = None


@dataclass
class Thumb:
    jpeg: bytes | None         # None: the source image is not on this machine
    caption: list[str]
    tone: str | None = None


@dataclass
class Gallery:
    title: str
    thumbs: list[Thumb]
    empty: str = "none"


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    anchor: str = ""


@dataclass
class Document:
    title: str
    subtitle: str
    verdict: Paragraph | None
    sections: list[Section]
