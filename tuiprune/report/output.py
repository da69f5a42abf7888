"""Where ``tuiprune report --out PATH [--format md|html]`` writes, and the writing.

- ``--out DIR`` (an existing directory, or a new path without a ``.md``/``.html`` suffix,
  created): ``DIR/report.md`` with the figures beside it as ``DIR/<figure>.png``; with
  ``--format html``, the single file ``DIR/report.html``.
- ``--out FILE.md``: that file, the figures beside it as ``<FILE stem>-<figure>.png`` (so
  two reports can share a folder).
- ``--out FILE.html`` (or any file with ``--format html``): one self-contained HTML file,
  every figure inlined as a base64 ``data:`` image.

Every file is written through a temporary file and renamed, so a failed write leaves no half
file. A destination that cannot be written is a :class:`UserError` (exit 2, one line), found
before the log is read.
"""

from __future__ import annotations

import base64
import html
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

from engine.errors import UserError
from tuiprune.format import printable
from tuiprune.report.figures import Figure

FORMATS = ("md", "html")
SUFFIX = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}
CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f3f3f3}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
code{background:#f3f3f3;padding:0 .2em}"""


@dataclass
class Destination:
    """The report file and its format; ``prefix`` starts the figure file names."""

    path: Path
    format: str
    prefix: str = ""

    @property
    def folder(self) -> Path:
        return self.path.parent


def _safe_stem(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "report"


def _fail(path: Path, exc: OSError) -> UserError:
    return UserError(f"--out {printable(path)}: cannot write "
                     f"({printable(exc.strerror or exc)}); choose a folder you can write to")


def _probe(folder: Path, out: Path) -> None:
    """Create ``folder`` if needed and check that a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tuiprune-probe-"):
            pass
    except OSError as exc:
        raise _fail(out, exc) from None


def destination(out: Optional[Path], fmt: Optional[str]) -> Optional[Destination]:
    """The destination of ``--out``/``--format``; None: print only (no file, no figures)."""
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"--format {printable(fmt)}: choose md or html")
    if out is None:
        if fmt == "html":
            raise UserError("--format html writes a file: add --out DIR or --out FILE.html")
        return None
    out = Path(out)
    suffix = SUFFIX.get(out.suffix.lower())
    is_file = suffix is not None or (out.exists() and not out.is_dir())
    if is_file:
        if fmt is not None and suffix is not None and fmt != suffix:
            raise UserError(f"--out {printable(out)} is a .{suffix} file but --format is "
                            f"{fmt}; give a matching name or leave out --format")
        kind = fmt or suffix or "md"
        if not out.parent.is_dir():
            raise UserError(f"--out {printable(out)}: the folder {printable(out.parent)} does "
                            f"not exist")
        _probe(out.parent, out)
        return Destination(out, kind, f"{_safe_stem(out.stem)}-")
    kind = fmt or "md"
    _probe(out, out)
    return Destination(out / f"report.{kind}", kind)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file beside it (no half file on failure)."""
    if path.is_dir():
        raise UserError(f"--out {printable(path)}: is a directory")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _fail(path, exc) from None


def to_html(markdown: str, title: str, images: Dict[str, bytes]) -> str:
    """One self-contained HTML page of the report: the Markdown rendered (raw HTML in it
    stays text), each image whose file name is in ``images`` inlined as a data URI."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    for token in tokens:
        for child in token.children or ():
            src = child.attrGet("src") if child.type == "image" else None
            if src in images:
                child.attrSet("src", "data:image/png;base64," +
                              base64.b64encode(images[src]).decode("ascii"))
    body = md.renderer.render(tokens, md.options, {})
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style></head>\n"
            f"<body>\n{body}</body></html>\n")


def write_report(dest: Destination, markdown: str, title: str,
                 figures: Sequence[Figure]) -> list:
    """Write the report (and the PNG figures, for Markdown); return the paths written."""
    drawn = [f for f in figures if f.png is not None]
    if dest.format == "html":
        images = {f.filename(dest.prefix): f.png for f in drawn}
        write_atomic(dest.path, to_html(markdown, title, images).encode("utf-8"))
        return [dest.path]
    written = []
    for f in drawn:
        path = dest.folder / f.filename(dest.prefix)
        write_atomic(path, f.png)
        written.append(path)
    write_atomic(dest.path, markdown.encode("utf-8"))
    return [dest.path] + written
