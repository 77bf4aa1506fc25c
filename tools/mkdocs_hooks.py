"""mkdocs hooks: the site's home page is README.md and its benchmarks page is
bench/README.md, rendered from those files so that each text exists once.

Their links are written for a reader of the repository: ``docs/x.md``
becomes the site's ``x.md``, and a link to a file outside ``docs/`` (which
the site does not hold) becomes its path in code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RENDERED = {"index.md": ROOT / "README.md", "benchmarks.md": ROOT / "bench" / "README.md"}
LINK = re.compile(r"\[([^\]]+)\]\((?!https?://|#)([^)]+)\)")


def _site_link(match: re.Match[str], source: Path) -> str:
    text, target = match.groups()
    path = (source.parent / target).resolve()
    docs = ROOT / "docs"
    if path.is_relative_to(docs):
        return f"[{text}]({path.relative_to(docs).as_posix()})"
    if path == RENDERED["benchmarks.md"]:
        return f"[{text}](benchmarks.md)"
    return text if text.startswith("`") else f"{text} (`{path.relative_to(ROOT).as_posix()}`)"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """The text of README.md or bench/README.md for the pages they render."""
    source = RENDERED.get(page.file.src_uri)
    if source is None:
        return markdown
    return LINK.sub(lambda match: _site_link(match, source), source.read_text())
