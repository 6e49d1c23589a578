"""A Document as one self-contained HTML page (inline CSS, pictures as data: URIs, a content
security policy that forbids any network load) or as Markdown for CI logs."""

from __future__ import annotations

import base64
from html import escape

from focalinfer.report.document import Cell, Document, Figure, Gallery, Paragraph, Table

# The page may load nothing: styles are inline and every picture is a data: URI.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --good: #0e7c3a; --good-bg: #e3f9e5;
        --bad: #b42318; --bad-bg: #fde8e8; --accent: #2f5fa7; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       color: var(--ink); background: #f5f7fa; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; background: #fff; min-height: 100vh; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.subtitle { color: var(--muted); margin: 0 0 16px; }
nav { font-size: 13px; margin: 8px 0 0; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
.verdict { padding: 12px 16px; border-radius: 6px; font-weight: 600; margin: 14px 0; }
.verdict.good { background: var(--good-bg); color: var(--good); border-left: 5px solid var(--good); }
.verdict.bad { background: var(--bad-bg); color: var(--bad); border-left: 5px solid var(--bad); }
.verdict.muted { background: #eef2f7; color: var(--muted); border-left: 5px solid var(--line); }
p { margin: 6px 0 10px; }
p.muted, .note { color: var(--muted); font-size: 13px; }
p.good { color: var(--good); font-weight: 600; } p.bad { color: var(--bad); font-weight: 600; }
.tablewrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13.5px; }
caption { caption-side: top; text-align: left; color: var(--muted); font-size: 13px; padding-bottom: 4px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f0f4f8; font-weight: 600; }
td.good { color: var(--good); font-weight: 600; } td.bad { color: var(--bad); font-weight: 600; }
td.muted { color: var(--muted); }
td code, p code { font-size: 12.5px; }
figure { margin: 10px 0 16px; }
figure img { max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; margin: 6px 0 14px; }
.thumb { width: 150px; font-size: 12px; border: 1px solid var(--line); border-radius: 6px; padding: 6px; }
.thumb.bad { border-color: #f3b8b3; background: #fffafa; } .thumb.good { border-color: #a6dfb3; background: #f8fffa; }
.thumb img, .thumb .missing { width: 136px; height: 136px; object-fit: cover; border-radius: 4px; display: block; }
.thumb .missing { background: #eef2f7; color: var(--muted); display: flex; align-items: center;
                  justify-content: center; text-align: center; padding: 8px; }
.thumb div.line { overflow-wrap: anywhere; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def _data_uri(kind: str, data: bytes) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def _cell(value, tag: str = "td") -> str:
    cell = value if isinstance(value, Cell) else Cell(str(value))
    attrs = (f' class="{cell.tone}"' if cell.tone else "") + (f' title="{escape(cell.title)}"' if cell.title else "")
    return f"<{tag}{attrs}>{escape(cell.text)}</{tag}>"


def _html_table(table: Table) -> str:
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    head = ("<thead><tr>" + "".join(_cell(h, "th") for h in table.headers) + "</tr></thead>"
            if any(table.headers) else "")
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in table.rows)
    return f'<div class="tablewrap"><table>{caption}{head}<tbody>{body}</tbody></table></div>'


def _html_block(block) -> str:
    if isinstance(block, Paragraph):
        return f'<p class="{block.tone or ""}">{escape(block.text)}</p>'
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Figure):
        note = f'<p class="note">{escape(block.note)}</p>' if block.note else ""
        if block.png is None:
            return note + _html_table(block.table)
        return (f'<figure><img src="{_data_uri("image/png", block.png)}" alt="{escape(block.alt)}">'
                f"<figcaption>{escape(block.alt)}</figcaption></figure>{note}")
    if isinstance(block, Gallery):
        items = []
        for thumb in block.thumbs:
            picture = (f'<img src="{_data_uri("image/jpeg", thumb.jpeg)}" alt="{escape(thumb.caption[0])}">'
                       if thumb.jpeg else '<div class="missing">source image not on this machine</div>')
            lines = "".join(f'<div class="line">{escape(line)}</div>' for line in thumb.caption)
            items.append(f'<div class="thumb {thumb.tone or ""}">{picture}{lines}</div>')
        body = f'<div class="gallery">{"".join(items)}</div>' if items else f'<p class="muted">{escape(block.empty)}</p>'
        return f"<h3>{escape(block.title)}</h3>{body}"
    raise TypeError(f"unknown block {type(block).__name__}")


def to_html(doc: Document, footer: str) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{escape(s.title)}</a>' for s in doc.sections)
    verdict = (f'<div class="verdict {doc.verdict.tone or "muted"}">{escape(doc.verdict.text)}</div>'
               if doc.verdict else "")
    sections = "".join(f'<section id="{s.anchor}"><h2>{escape(s.title)}</h2>{"".join(map(_html_block, s.blocks))}'
                       "</section>" for s in doc.sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(doc.title)}</title><style>{CSS}</style></head>\n<body><main>"
        f'<h1>{escape(doc.title)}</h1><p class="subtitle">{escape(doc.subtitle)}</p><nav>{nav}</nav>{verdict}'
        f"{sections}<footer>{escape(footer)}</footer></main></body></html>\n"
    )


def _md_text(value) -> str:
    text = value.text if isinstance(value, Cell) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines.append("| " + " | ".join(map(_md_text, table.headers)) + " |")
    lines.append("|" + "---|" * len(table.headers))
    lines += ["| " + " | ".join(map(_md_text, row)) + " |" for row in table.rows]
    return lines + [""]


def _md_block(block) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text, ""]
    if isinstance(block, Table):
        return _md_table(block)
    if isinstance(block, Figure):
        return ([block.note, ""] if block.note else []) + _md_table(block.table)
    if isinstance(block, Gallery):
        rows = [f"- {' — '.join(t.caption)}" for t in block.thumbs] or [block.empty]
        return [f"**{block.title}**", "", *rows, ""]
    raise TypeError(f"unknown block {type(block).__name__}")


def to_markdown(doc: Document, footer: str) -> str:
    lines = [f"# {doc.title}", "", doc.subtitle, ""]
    if doc.verdict:
        lines += [f"**{doc.verdict.text}**", ""]
    for section in doc.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _md_block(block)
    return "\n".join(lines + [f"_{footer}_", ""])
