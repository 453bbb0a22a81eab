"""Chapter 6's and 7's tables as the reader sees them: each function takes the rows or frame the chapter computed
and returns a pandas Styler with the book's formats (percentages, intervals, ``—`` for a missing value)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from helpers.studies.adaptive_sections import StudyModels
from helpers.studies.adaptive_study import Gain
from helpers.studies.evaluate import clean_accuracy
from helpers.studies.shares import c6_design
from helpers.studies.verdicts import POWER

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler


def models_view(models: StudyModels, *, roles: Mapping[str, str], images, labels) -> Styler:
    """Chapter 6's models: name, role, number of training seeds and clean accuracy (mean over seeds)."""
    column = "clean accuracy (mean over seeds)"
    return pd.DataFrame([{"model": models.names[s], "role": roles[s], "seeds": len(models.by_seed[s]),
                          column: np.mean([clean_accuracy(m, images, labels) for m in models.by_seed[s].values()])}
                         for s in roles]).style.format({column: "{:.1%}"}).hide(axis="index")


def worst_curves_view(curves: pd.DataFrame) -> Styler:
    """Robust accuracy under PGD's worst case, one row per budget and one column per model."""
    wide = curves[curves["attack"] == "worst"].pivot(index="budget", columns="label", values="accuracy")
    return (wide.rename_axis(index=None, columns=None).style.format("{:.1%}", na_rep="—").format_index("ε = {:g}")
            .set_caption("Robust accuracy under PGD, worst case over both gradients, all seeds"))


def transfer_view(summary: pd.DataFrame) -> Styler:
    """The transferred digits: share still on target and share classified correctly, per set and receiver."""
    return (summary.rename(columns={"images": "images", "role": "role", "receiver": "model that receives them",
                                    "still_target": "still the target", "correct": "classified correctly"})
            .style.format({"still the target": "{:.1%}", "classified correctly": "{:.1%}"}, na_rep="—").hide(axis="index")
            .set_caption("Transferred adversarial digits: share still on target and share classified correctly (mean over seeds)"))


def paper_attack_view(paper_table: pd.DataFrame) -> Styler:
    """The paper's attack per model and gradient: success, median ‖δ‖₂ with its interval, mean steps."""
    intervals = [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(paper_table["median_l2_lo"], paper_table["median_l2_hi"], strict=True)]
    return (paper_table.assign(interval=intervals)
            [["model", "gradient", "n_attacked", "success_rate", "median_l2", "interval", "mean_steps"]]
            .rename(columns={"n_attacked": "digits attacked", "success_rate": "success", "median_l2": "median ‖δ‖₂",
                             "interval": "95 % interval", "mean_steps": "mean steps"})
            .style.format({"success": "{:.1%}", "median ‖δ‖₂": "{:.2f}", "mean steps": "{:.1f}"}, na_rep="—").hide(axis="index"))


def design_view(*, n_digits: int, n_seeds: int, n_models: int) -> Styler:
    """C6's design beside smaller and larger ones: digits, seeds, planned standard error and smallest detectable gain."""
    rows = []
    for digits in sorted({50, 100, n_digits, 2 * n_digits}):
        for seeds in sorted({3, n_seeds}):
            d = c6_design(n_digits=digits, n_seeds=seeds, n_models=n_models)
            rows.append({"digits": digits, "training seeds": seeds, "planned standard error": d.standard_error,
                         f"smallest gain detected ({POWER:.0%} power)": d.detectable,
                         "": "← this chapter" if (digits, seeds) == (n_digits, n_seeds) else ""})
    return (pd.DataFrame(rows).style.format({c: "{:.1%}" for c in rows[0] if c.startswith(("planned", "smallest"))})
            .hide(axis="index").set_caption(f"C6's design: the smallest gain in robust share detected with {POWER:.0%} power "
                                            f"(family-wise over {n_models} defended models), planned before the data"))


def strong_view(strong_curves: pd.DataFrame, *, added: Sequence[Mapping]) -> Styler:
    """Robust accuracy after each attack of the cascade per model (rows, in the cascade's order; the last row of a model
    is its worst case) and budget ε > 0 (columns), with the digit-budget pairs each attack broke first (``added``:
    :func:`helpers.studies.adaptive_readouts.added_rows`)."""
    broke = {(row["model"], row["attack"]): row["pairs"] for row in added}
    rows = []
    for (label, attack), group in strong_curves.groupby(["label", "attack"], sort=False):
        if attack in ("gradient worst", "worst"):
            continue  # the same as the rows after the last gradient attack and after the last attack
        rows.append({"model": label, "attack": "PGD, both gradients" if attack == "PGD worst" else f"+ {attack}",
                     **{f"ε = {e:g}": a for e, a in zip(group["budget"], group["accuracy"], strict=True)},
                     "pairs it broke first": broke.get((label, attack), np.nan)})
    shown = pd.DataFrame(rows)
    return shown.style.format({c: "{:.1%}" for c in shown.columns if c.startswith("ε")} | {"pairs it broke first": "{:.0f}"},
                              na_rep="—").hide(axis="index").set_caption(
        "Robust accuracy on every digit after each attack of the cascade and every one above it (mean over seeds; a model's "
        "last row is its worst case), and the digit-budget pairs each attack broke first (summed over seeds and budgets)")


def checks_view(checks: Sequence[Mapping]) -> Styler:
    """The sanity checks, each passed or failed, with its threshold and the margin it passed (or failed) by."""
    table = pd.DataFrame(checks)
    if "margin" not in table:  # a sanity.csv written before checks reported their margin
        table["margin"] = float("nan")
    # Thresholds carry a 1e-12 allowance for float sums (one digit of 50 is 0.02 only up to rounding): not a margin to show.
    return (table.assign(passed=lambda t: t["passed"].map({True: "✓ pass", False: "✗ FAIL"}),
                         threshold=lambda t: t["threshold"].round(9), margin=lambda t: t["margin"].round(9))
            [["check", "model", "measured", "threshold", "margin", "passed"]]
            .style.format({"threshold": "{:.3g}", "margin": "{:+.3g}"}, na_rep="—").hide(axis="index")
            .set_caption("Sanity checks: margin is how far the measured value lies from the threshold, on the passing "
                         "side when positive"))


def gain_view(gains: Mapping[str, Gain], shares: Mapping) -> Styler:
    """Each defended model's robust share, its gain over the undefended model with its interval and Holm's p."""
    table = pd.DataFrame([{"model": g.model, "robust share": float(shares[g.model].mean()), "gain": g.effect, "low": g.low,
                           "high": g.high, "p (Holm)": g.p_holm, "seeds": g.n_seeds, "digits": g.n_images} for g in gains.values()])
    return table.style.format({"robust share": "{:.1%}", "gain": "{:+.1%}", "low": "{:+.1%}", "high": "{:+.1%}",
                               "p (Holm)": "{:.3f}"}, na_rep="—").hide(axis="index")
