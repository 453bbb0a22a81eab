"""Notebook plumbing: validate the papermill parameters before any heavy work, show the run settings, glue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helpers.profiles import check_parameters, shown_parameters

__all__ = ["check_parameters", "glue", "run_settings"]


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
