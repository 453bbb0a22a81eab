"""Notebook plumbing: validate the papermill parameters before any heavy work, show the run settings, glue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helpers.preflight import preflight
from helpers.profiles import shown_parameters

__all__ = ["check_parameters", "glue", "run_settings"]


def check_parameters(params: Mapping[str, Any]) -> None:
    """Check a chapter's parameters (its ``globals()``) and, cheaply, the files they name: image folders and
    their class folders, and the pretrained weight files (:func:`helpers.preflight.preflight`)."""
    preflight({name: params[name] for name in params if not name.startswith("_")}, scan_images=False, load_weights=False)


def run_settings(params: Mapping[str, Any]) -> None:
    """Show the settings of this run as one Markdown line."""
    from IPython.display import Markdown, display

    shown = [f"`{k}` = {params[k]!r}" for k in shown_parameters() if k in params]
    display(Markdown("**Run settings:** " + ", ".join(shown)))


def glue(name: str, value: Any) -> None:
    """myst-nb ``glue`` of a value for the prose, as a plain Python scalar (NumPy scalars do not format)."""
    from myst_nb import glue as _glue

    if hasattr(value, "item"):
        value = value.item()
    _glue(name, value, display=False)
