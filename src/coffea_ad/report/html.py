"""One self-contained HTML page from a report's markdown: tables, and every figure embedded.

The markdown page (``report.md``) stays the source; this renders it with markdown-it-py
(CommonMark plus tables) and replaces each image reference by the PNG itself as a ``data:``
URI, so that the page can be mailed or attached to an analysis note as one file. A figure
that also exists as PDF (vector, for the note itself) gets a link to it beside the image;
that link is relative, so it works while the page sits beside its figures.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from coffea_ad._optional import require
from coffea_ad.atomic import atomic_write_text
from coffea_ad.errors import MissingFileError

__all__ = ["markdown_to_html", "write_html"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #3f90da; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
th, td { border: 1px solid #bbb; padding: .3em .7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #eef3fa; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
code { background: #f4f4f4; padding: 0 .2em; }
pre { background: #f4f4f4; padding: .5em; white-space: pre-wrap; overflow-wrap: anywhere; }
"""


# After loading, each figure records the width it decoded to (0: broken); a reader sees a
# red outline on a broken one, and a headless browser's DOM dump shows the widths (the test).
_CHECK = ("window.addEventListener('load', function () {"
          " document.querySelectorAll('img').forEach(function (img) {"
          " img.dataset.width = img.naturalWidth;"
          " if (!img.naturalWidth) { img.style.outline = '3px solid red'; } }); });")


def _figure_rule(base: Path, missing: list[str]) -> Any:
    def render_image(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        src = str(token.attrGet("src") or "")
        alt = self.renderInlineAsText(token.children or [], options, env)
        path = base / src
        if src.startswith(("data:", "http:", "https:")) or not path.is_file():
            if not src.startswith(("data:", "http:", "https:")):
                missing.append(src)
            return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">'
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        mime = "image/svg+xml" if path.suffix == ".svg" else f"image/{path.suffix.lstrip('.')}"
        pdf = path.with_suffix(".pdf")
        link = (f' (<a href="{html.escape(pdf.relative_to(base).as_posix())}">PDF</a>)'
                if pdf.is_file() else "")
        return (f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(alt)}" '
                f'data-file="{html.escape(src)}"><figcaption>{html.escape(alt)}{link}'
                "</figcaption></figure>")

    return render_image


def markdown_to_html(text: str, base: str | Path, *, title: str = "coffea-ad report"
                     ) -> tuple[str, list[str]]:
    """Render markdown ``text`` as a full HTML page, images under ``base`` embedded.

    Returns:
        ``(html, missing)``: the page, and the image references that named no file.
    """
    markdown_it = require("markdown_it", purpose="the HTML report")
    md = markdown_it.MarkdownIt("commonmark", {"html": False}).enable("table")
    missing: list[str] = []
    md.add_render_rule("image", _figure_rule(Path(base), missing))
    body = md.render(text)
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
            f"<body>\n{body}<script>{_CHECK}</script>\n</body>\n</html>\n")
    return page, missing


def write_html(markdown_path: str | Path, html_path: str | Path | None = None, *,
               title: str = "coffea-ad report") -> Path:
    """Write the HTML page of ``markdown_path`` (default: same name, ``.html``) atomically
    (:func:`coffea_ad.atomic.atomic_write_text`).

    Raises:
        FileNotFoundError: an image the markdown references is not there (the page would
            show a broken figure).
    """
    src = Path(markdown_path)
    out = Path(html_path) if html_path is not None else src.with_suffix(".html")
    page, missing = markdown_to_html(src.read_text(), src.parent, title=title)
    if missing:
        msg = (f"{src}: figures referenced but not found beside it: {missing} (expected files "
               f"in {src.parent})")
        raise MissingFileError(msg)
    return atomic_write_text(out, page)
