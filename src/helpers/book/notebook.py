"""Notebook plumbing: validate the papermill parameters before any heavy work, show the run settings, glue."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from helpers.book.preflight import preflight
from helpers.book.profiles import PROFILE_NAMES, profile_parameters, shown_parameters

__all__ = ["LAB_PROFILE_ENV", "apply_lab_profile", "check_parameters", "glue", "glue_all", "run_settings", "sentence", "verdict_table"]

# Set by `make lab` (scripts/lab.py) to the profile of the build in data/, so that a chapter opened in JupyterLab
# runs with the parameters its results were made with.
LAB_PROFILE_ENV = "BOOK_PROFILE"


def check_parameters(params: MutableMapping[str, Any]) -> None:
    """Check a chapter's parameters (its ``globals()``) and, cheaply, the files they name: image folders and
    their class folders, and the pretrained weight files (:func:`helpers.book.preflight.preflight`). In JupyterLab,
    first take the profile that ``make lab`` names (:func:`apply_lab_profile`)."""
    apply_lab_profile(params)
    preflight({name: params[name] for name in params if not name.startswith("_")}, scan_images=False, load_weights=False)


def apply_lab_profile(params: MutableMapping[str, Any], *, profile: str | None = None) -> dict[str, list[str]]:
    """Give a chapter opened in JupyterLab the parameters of the build it reads.

    A notebook's parameters cell holds the ``default`` profile. When ``profile`` (default ``$BOOK_PROFILE``, which
    ``make lab`` sets to the profile of the last ``make book``) names another profile and the chapter still says
    ``profile = "default"`` (the book runner injects its own profile, so its runs are left alone), every parameter
    that still has its ``default`` value takes that profile's value; a value the reader edited is kept. Returns the
    names ``{"changed": [...], "kept": [...]}`` and shows them in one line."""
    profile = os.environ.get(LAB_PROFILE_ENV) if profile is None else profile
    if not profile or profile == "default" or params.get("profile") != "default":
        return {"changed": [], "kept": []}
    if profile not in PROFILE_NAMES or profile == "paper":
        raise ValueError(f"{LAB_PROFILE_ENV}: expected quick or default (the paper profile is run with make book), "
                         f"got {profile!r}")
    defaults, chosen = profile_parameters("default"), profile_parameters(profile)
    changed, kept = [], []
    for name in [n for n in defaults if n in params]:
        if params[name] != defaults[name]:
            kept.append(name)
        elif chosen[name] != defaults[name] or name == "profile":
            params[name] = chosen[name]
            changed.append(name)
    from IPython.display import Markdown, display

    display(Markdown(f"**Profile {profile}** (`make lab`, the build in `data/`): {len(changed)} parameters take its "
                     "values" + (f"; kept as edited: {', '.join(f'`{n}`' for n in kept)}" if kept else "") + "."))
    return {"changed": changed, "kept": kept}


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


def glue_all(values: Mapping[str, Any]) -> None:
    """:func:`glue` every value of ``values`` under its name, in order."""
    for name, value in values.items():
        glue(name, value)


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
    words, the verdict coloured with what its interval establishes or rules out under it, the effect as a
    percentage with its 95 % interval ("—" where a claim has no single effect)."""
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

    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)

    def verdict(row) -> str:  # the word, and under it what its interval establishes or rules out
        proves = row.get("proves", "")
        shown = sentence(proves) if isinstance(proves, str) and proves else ""
        return f"<b>{row['verdict']}</b>" + (f"<br><span style='font-size: 0.85em'>{shown}</span>" if shown else "")

    shown = pd.DataFrame([{
        "Claim": str(row["claim"]),
        "Measured with": MEASURE_WORDS.get(str(row.get("measure", "")), str(row.get("measure", ""))),
        "Verdict, and what its interval shows": verdict(row),
        "Effect [95 % interval]": effect(row),
        "Evidence": sentence(row.get("evidence", "")),
    } for row in records])
    colours = pd.DataFrame("", index=shown.index, columns=shown.columns)
    colours.iloc[:, 2] = [f"background-color: {VERDICT_COLOURS.get(str(r['verdict']), '')}; min-width: 12em" for r in records]
    return (shown.style.hide(axis="index").apply(lambda _: colours, axis=None)
            .set_properties(subset=["Claim", "Evidence"], **{"font-size": "0.85em"})
            .set_table_styles([{"selector": "td", "props": "vertical-align: top;"},
                               {"selector": "td.col0", "props": "min-width: 9em;"}]))
