"""The report as a document: `Part` (one section's blocks) and its two renderings.

A section fills a `Part` with blocks (text, a note, what it rests on, pictures, a table);
`render_markdown` and `render_html` turn the same parts into `report.md` and
`report.html`, so the two files always say the same thing. The HTML is one
self-contained page (inline CSS, no script, nothing fetched from elsewhere).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Part:
    """One section: blocks rendered to both HTML and Markdown.

    Blocks, in the order added: `text` (a paragraph; `code` spans allowed), `note` (a
    highlighted remark, such as why an input is missing), `basis` (what the part rests
    on: how many trials), `image` / `gallery` (names of files the part carries), `table`.
    `files` holds the pictures themselves (name -> PNG bytes): `build_report` writes
    them into the report folder, so a section never touches the file system."""
    key: str
    title: str
    blocks: list[tuple] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def text(self, s: str) -> None:
        self.blocks.append(("p", s))

    def note(self, s: str, short: str | None = None) -> None:
        """A highlighted remark; `short` is what to say instead when the same reason was
        already given above (`sections.build_parts` decides)."""
        self.blocks.append(("note", s) if short is None else ("note", s, short))

    def file(self, name: str, data: bytes) -> str:
        """Carry a file (a PNG) for the report folder; returns its name for `image`."""
        if name in self.files:
            raise ValueError(f"part {self.key!r} already has a file {name!r}")
        self.files[name] = data
        return name

    def basis(self, s: str) -> None:
        self.blocks.append(("basis", s))

    def image(self, name: str, alt: str) -> None:
        self.blocks.append(("img", name, alt))

    def gallery(self, items: list[tuple[str, str]]) -> None:
        self.blocks.append(("gallery", items))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", headers, rows))


def fmt(x: Any, digits: int = 3) -> str:
    """A table cell as text: floats to `digits` decimals, NaN and None empty."""
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def _md_cell(x: Any) -> str:
    return fmt(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, intro: list[str], parts: list[Part]) -> str:
    """`report.md`: the title, the intro paragraphs, then one `##` section per part."""
    out = [f"# {title}", ""]
    out += [line for s in intro for line in (s, "")]
    for p in parts:
        out += [f"## {p.title}", ""]
        for b in p.blocks:
            if b[0] == "p":
                out += [b[1], ""]
            elif b[0] == "note":
                out += [f"> **Note:** {b[1]}", ""]
            elif b[0] == "basis":
                out += [f"*Rests on:* {b[1]}", ""]
            elif b[0] == "img":
                out += [f"![{b[2]}]({b[1]})", ""]
            elif b[0] == "gallery":
                out += [f"![{alt}]({name})" for name, alt in b[1]] + [""]
            elif b[0] == "table":
                headers, rows = b[1], b[2]
                out.append("| " + " | ".join(headers) + " |")
                out.append("|" + "|".join("---" for _ in headers) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
                out.append("")
    return "\n".join(out).rstrip() + "\n"


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.2em} h2{margin-top:2em;border-bottom:1px
solid #ccc} table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#f2f2f2} td:first-child,th:first-child{text-align:left}
.note{background:#fff6d6;border-left:4px solid #e0b000;padding:.4em .8em;margin:.6em 0}
.basis{color:#555;font-size:.9em;font-style:italic}
.gallery{display:flex;flex-wrap:wrap;gap:10px} .gallery img{width:360px}
img{max-width:100%} code{background:#f4f4f4;padding:0 .2em}
nav ol{columns:2}
"""


def render_html(title: str, intro: list[str], parts: list[Part]) -> str:
    """`report.html`: the same content as `render_markdown`, with a table of contents."""
    e = html.escape
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{e(title)}</h1>"]
    out += [f"<p>{_inline(s)}</p>" for s in intro]
    out.append("<nav><ol>" + "".join(f"<li><a href='#{p.key}'>{e(p.title)}</a></li>"
                                     for p in parts) + "</ol></nav>")
    for p in parts:
        out.append(f"<section id='{p.key}'><h2>{e(p.title)}</h2>")
        for b in p.blocks:
            if b[0] == "p":
                out.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "note":
                out.append(f"<div class='note'><b>Note:</b> {_inline(b[1])}</div>")
            elif b[0] == "basis":
                out.append(f"<p class='basis'>Rests on: {_inline(b[1])}</p>")
            elif b[0] == "img":
                out.append(f"<p><img src='{e(b[1])}' alt='{e(b[2])}'></p>")
            elif b[0] == "gallery":
                out.append("<div class='gallery'>" + "".join(
                    f"<img src='{e(name)}' alt='{e(alt)}'>" for name, alt in b[1]) +
                    "</div>")
            elif b[0] == "table":
                headers, rows = b[1], b[2]
                out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>"
                                                          for h in headers) +
                           "</tr></thead><tbody>")
                out += ["<tr>" + "".join(f"<td>{e(fmt(c))}</td>" for c in r) + "</tr>"
                        for r in rows]
                out.append("</tbody></table>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _inline(s: str) -> str:
    """Escape, then turn `code` spans into <code> (the only markup the text uses)."""
    parts = html.escape(s).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
