"""Where the book's files live: under the repository root, whatever the working folder.

Jupyter starts a notebook's kernel in the notebook's own folder (``notebooks/``), the book runner in the repository
root, a test in a temporary folder: every path the package uses is therefore built from :func:`root`, never from the
working folder, so a chapter rerun in JupyterLab reads the models and results of ``make book`` and writes where the
runner writes.

``BOOK_ROOT`` moves everything to another folder (its ``data/`` and ``book/``); the runner's ``--output-root`` sets it.
``BOOK_RESULTS_DIR`` moves only the results folder (the unit tests use it).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ROOT_ENV", "data_dir", "live_slider_dir", "models_dir", "relative", "repository", "root"]

ROOT_ENV = "BOOK_ROOT"


def repository() -> Path:
    """The repository this package was loaded from (``src/helpers/core/`` is three levels below it)."""
    return Path(__file__).resolve().parents[3]


def root() -> Path:
    """The folder that holds ``data/`` and ``book/``: ``$BOOK_ROOT`` when set, else the repository."""
    chosen = os.environ.get(ROOT_ENV)
    if not chosen:
        return repository()
    path = Path(chosen).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"{ROOT_ENV}: {chosen!r} is not a folder")
    return path


def data_dir() -> Path:
    """``data/`` under :func:`root`: trained models, results files and the browser slider's weights."""
    return root() / "data"


def models_dir() -> Path:
    """The model cache, ``data/models/``."""
    return data_dir() / "models"


def live_slider_dir() -> Path:
    """The browser slider's weights files, ``data/live-slider/`` (the book build copies them into its ``_static``)."""
    return data_dir() / "live-slider"


def relative(path: str | os.PathLike[str]) -> str:
    """``path`` as written in results files: relative to :func:`root` (``data/models/x.keras``), so that the files
    name no machine's folders; a path outside the root is returned as given."""
    path = Path(path)
    try:
        return path.resolve().relative_to(root()).as_posix()
    except ValueError:
        return path.as_posix()
