"""The tables chapters 1, 4 and 5 show their readers: headers in words, numbers formatted, intervals under the values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from helpers.studies import scores

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

# Chapter 1's attack table: per column of ``attack.csv``, its header in words and its format.
ATTACK_WORDS = {
    "image_size": ("input size (px)", "{:.0f}"), "clean_accuracy": ("clean accuracy", "{:.1%}"),
    "n_attacked": ("digits attacked", "{:.0f}"), "success_rate": ("attack success", "{:.1%}"),
    "mean_l2": ("mean ‖δ‖₂", "{:.3f}"), "median_l2": ("median ‖δ‖₂", "{:.3f}"), "mean_steps": ("mean steps", "{:.1f}"),
    "median_rms": ("median RMS change per pixel", "{:.4f}"), "median_linf": ("median largest pixel change (L∞)", "{:.3f}"),
    "median_share_above_jnd": ("median share of pixels changed > 8/255", "{:.1%}"),
}
INTERVAL_STYLE = "font-size: 0.8em; color: #666; white-space: nowrap"


def shown(value: Any, fmt: str) -> str:
    """``value`` formatted with ``fmt`` when it is a number, "—" when it is not finite, else as text."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return fmt.format(number) if np.isfinite(number) else "—"


def attack_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Chapter 1's table: one column per attacked model, one row per measure of :data:`ATTACK_WORDS`."""
    return pd.DataFrame({row["model"]: {label: shown(row.get(key), fmt) for key, (label, fmt) in ATTACK_WORDS.items()}
                         for row in rows})


def with_ci(value: float, low: float, high: float, fmt: str) -> str:
    """A value with its 95 % interval below it, small and grey (HTML)."""
    return f"{value:{fmt}}<br><span style='{INTERVAL_STYLE}'>[{low:{fmt}}, {high:{fmt}}]</span>"


def score_table(rows: Sequence[Mapping[str, Any]]) -> Styler:
    """Chapter 5's table (rows of :func:`helpers.studies.scores.score_rows`): accuracy, then the paper's and the
    strongest measure of ‖δ‖₂ with the score each gives, intervals in brackets, and the other reading's distance."""
    table = pd.DataFrame(rows)
    columns = {"accuracy": ("clean_accuracy", "accuracy", ".1%"), "paper: mean ‖δ‖₂": ("mean_l2", "mean_l2", ".2f"),
               "paper: score": ("score", "score", ".2f"),
               "strongest: mean ‖δ‖₂": ("strongest_mean_l2", "strongest_mean_l2", ".2f"),
               "strongest: score": ("strongest_score", "strongest_score", ".2f")}
    shown_table, records = {"filter": table["label"]}, table.to_dict("records")
    for header, (value, bounds, fmt) in columns.items():
        shown_table[header] = [with_ci(r[value], r[f"{bounds}_lo"], r[f"{bounds}_hi"], fmt) for r in records]
    shown_table["filtered input: mean ‖δ‖₂"] = table["other_reading_mean_l2"].map("{:.2f}".format)
    return pd.DataFrame(shown_table).style.hide(axis="index")


def min_norm_table(rows: Sequence[Mapping[str, Any]]) -> Styler:
    """Chapter 5's median ‖δ‖₂ per model (rows) and attack (columns: every minimum-norm attack, then the strongest)."""
    wide = pd.DataFrame(rows).pivot_table(index="label", columns="attack", values="median_l2", sort=False,
                                          dropna=False)[list(scores.ATTACKS) + ["strongest"]]
    wide.columns = [scores.ATTACK_LABELS[c] for c in wide.columns]
    return wide.rename_axis(index=None, columns=None).style.format("{:.2f}", na_rep="—").set_caption("median ‖δ‖₂ per attack")


def resolution_table(rows: Sequence[Mapping[str, Any]], *, factor: int) -> Styler:
    """Chapter 5's upsampled study (rows of :func:`helpers.studies.scores.resolution_rows`), headers in words."""
    words = {"resolution": "image size (px)", "sigma": "σ", "relative_sigma": f"σ ÷ {factor}", "clean_accuracy": "clean accuracy",
             "success_rate": "attack success", "mean_l2": "mean ‖δ‖₂", "score": "score", "n_images": "digits attacked"}
    return pd.DataFrame(rows).rename(columns=lambda c: words.get(c, c.replace("_", " "))).style.format(
        {"clean accuracy": "{:.1%}", "attack success": "{:.0%}", "mean ‖δ‖₂": "{:.2f}", "score": "{:.2f}", "σ": "{:g}",
         f"σ ÷ {factor}": "{:g}"}, na_rep="—").hide(axis="index")


def validation_view(rows: Sequence[Mapping[str, Any]], choices: Mapping[str, str | None]) -> Styler:
    """Chapter 4's table of what the validation split says of each filter, the choices marked."""
    picked = {spec: [] for spec in choices.values() if spec}
    for key, words in (("best_defence", "best score"), ("best_gaussian", "best Gaussian"), ("best_median", "best median")):
        if choices.get(key):
            picked[choices[key]].append(words)
    table = pd.DataFrame([{"filter": row["label"], "validation accuracy": row["val_accuracy"],
                           "mean ‖δ‖₂ (paper's attack)": row["val_mean_l2"], "paper's score": row["val_score"],
                           "digits attacked": row["val_n_images"], "picked as": ", ".join(picked.get(row["defence"], []))}
                          for row in rows])
    return table.style.format({"validation accuracy": "{:.1%}", "mean ‖δ‖₂ (paper's attack)": "{:.2f}",
                               "paper's score": "{:.2f}"}, na_rep="—").hide(axis="index").set_caption(
        "What the validation digits say of each filter: accuracy (mean over seeds), the paper's attack (first seed's "
        "model) and the paper's score, accuracy × mean ‖δ‖₂; the filters picked are marked")
