"""Notebook plumbing: validate the papermill parameters before any heavy work, show the run settings, glue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helpers.preflight import preflight
from helpers.profiles import shown_parameters

__all__ = ["check_parameters", "glue", "run_settings", "sentence", "verdict_table"]


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


def sentence(text: str) -> str:
    """``text`` as the start of a sentence: its first letter in capitals (evidence strings begin in lower case)."""
    text = str(text).strip()
    first = text.split(" ", 1)[0]
    if "_" in first or any(ch.isdigit() for ch in first):  # a name (``small_cnn``) or a number keeps its spelling
        return text
    return text[:1].upper() + text[1:]


VERDICT_COLOURS = {"confirmed": "#d6f5d6", "partly": "#fff3c4", "refuted": "#f8d0d0", "inconclusive": "#e8e8e8"}
MEASURE_WORDS = {"paper": "the paper's attack", "strongest": "the strongest attack", "accuracy": "clean accuracy", "—": "—", "": "—"}


def verdict_table(rows):
    """The verdict rows (``helpers.verdicts.verdict_rows`` or ``verdicts.csv``) as a table for readers: headers in
    words, the effect as a percentage with its 95 % interval, "—" where a claim has no single effect, the verdict
    coloured."""
    import math

    import pandas as pd

    def effect(row) -> str:
        values = [row.get(k) for k in ("effect", "low", "high")]
        try:
            e, lo, hi = (float(v) for v in values)
        except (TypeError, ValueError):
            return "—"
        if not all(math.isfinite(v) for v in (e, lo, hi)):
            return "—"
        interval = f"[{lo:+.1%}, {hi:+.1%}]".replace("-", "−")
        return f"{e:+.1%}".replace("-", "−") + f"<br><span style='font-size: 0.85em; color: #666; white-space: nowrap'>{interval}</span>"

    shown = pd.DataFrame([{
        "Claim": str(row["claim"]),
        "Measured with": MEASURE_WORDS.get(str(row.get("measure", "")), str(row.get("measure", ""))),
        "Verdict": str(row["verdict"]),
        "Effect [95 % interval]": effect(row),
        "Evidence": sentence(row.get("evidence", "")),
    } for row in (rows.to_dict("records") if hasattr(rows, "to_dict") else rows)])
    return (shown.style.hide(axis="index")
            .map(lambda v: f"background-color: {VERDICT_COLOURS.get(v, '')}", subset=["Verdict"])
            .set_properties(subset=["Claim", "Evidence"], **{"font-size": "0.85em"})
            .set_table_styles([{"selector": "td", "props": "vertical-align: top;"},
                               {"selector": "td.col0", "props": "min-width: 9em;"}]))
