"""A page that pastes values glued in another notebook (``{glue:text}`other.ipynb::key```) is rebuilt when that
notebook changes.

myst-nb resolves such cross-document glue when it writes the page but records no dependency, so an incremental
build that re-read only the notebook would leave the landing page's findings from the previous run. This extension
notes the notebook as a dependency of the page that pastes from it.
"""

from __future__ import annotations

import re
from pathlib import Path

CROSS_GLUE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+\.ipynb)::")


def note_glued_notebooks(app, docname: str, source: list[str]) -> None:
    folder = Path(app.env.doc2path(docname)).parent
    for notebook in sorted(set(CROSS_GLUE.findall(source[0]))):
        app.env.note_dependency(str((folder / notebook).resolve()))


def setup(app):
    app.connect("source-read", note_glued_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
