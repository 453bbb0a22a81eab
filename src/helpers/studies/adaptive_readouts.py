"""Chapter 6's readouts: the tables and sentences its prose shows, computed from the study's results.

Each function takes what a section of ``notebooks/06_adaptive`` measured and returns rows or the values the prose
glues, by glue name; none trains or attacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from helpers.attacks.adaptive import bpda_model, input_gradient
from helpers.attacks.registry import attack_names
from helpers.defences.filters import Defence
from helpers.studies.cascade import Cascade, added_counts
from helpers.studies.shares import C6Design, c6_design
from helpers.studies.verdicts import MIN_ROBUST_GAIN, PILOT, POWER


def pixel_sweep(digit: np.ndarray, defences: Sequence[str], *, points: int = 101
                ) -> tuple[tuple[int, int], np.ndarray, dict[str, np.ndarray]]:
    """The digit's pixel closest to 0.5 swept from 0 to 1: the pixel, the sweep and each filter's output there."""
    row, col = np.unravel_index(np.argmin(np.abs(digit[..., 0] - 0.5)), digit.shape[:2])
    sweep = np.linspace(0.0, 1.0, points, dtype=np.float32)
    batch = np.repeat(digit[None], len(sweep), axis=0)
    batch[:, row, col, 0] = sweep
    return (row, col), sweep, {spec: Defence.parse(spec).apply(batch)[:, row, col, 0] for spec in defences}


def gradient_maps(models: Mapping, image: np.ndarray, label: np.ndarray, defences: Sequence[str]
                  ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per defended model, for one (1, H, W, C) image: the filtered image, the exact and the BPDA loss gradients."""
    return {spec: (Defence.parse(spec).apply(image)[0, ..., 0], input_gradient(models[spec], image, label)[0, ..., 0],
                   input_gradient(bpda_model(models[spec]), image, label)[0, ..., 0]) for spec in defences}


def median_sweep_sentence(sweep: np.ndarray, swept: np.ndarray | None) -> str:
    """How a median filter's output follows one swept input pixel (``swept``: its output, None with no median)."""
    if swept is None:
        return ("(none is under test in this run) the filtered value would follow the pixel only while it is "
                "the median of its window")
    moving = np.flatnonzero(np.abs(np.diff(swept)) > 1e-6)
    if not len(moving):
        return ("the filtered value does not move at all over the whole sweep — the line is flat: this pixel is never the "
                "median of its window, so its own value never reaches the output and the exact gradient at it is zero")
    return (f"the filtered value is flat except while the input lies between {sweep[moving[0]]:.2f} and "
            f"{sweep[moving[-1] + 1]:.2f}, where it follows the input (slope 1): only there is the pixel the median of its window")


def median_sweep_glued(sweep: np.ndarray, swept: Mapping[str, np.ndarray]) -> dict:
    """``median_sweep_sentence`` for the first median filter among ``swept`` (none: the sentence says so)."""
    medians = [s for s in swept if Defence.parse(s).kind == "median"]
    return {"median_sweep_sentence": median_sweep_sentence(sweep, swept[medians[0]] if medians else None)}


def transfer_summary(controls: Sequence[Mapping]) -> pd.DataFrame:
    """Per image set, role and receiver: the share still on target and the share correct, mean over seeds."""
    frame = pd.DataFrame(controls)
    return frame.groupby(["images", "role", "receiver"], sort=False)[["still_target", "correct"]].mean().reset_index()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays (0 when either is zero)."""
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def gradient_rows(gradients: Mapping[str, tuple[np.ndarray, np.ndarray]], names: Mapping[str, str]) -> list[dict]:
    """Per defended model, the share of non-zero pixels of its (exact, BPDA) gradients and their cosine."""
    return [{"model": names[s], "exact: pixels ≠ 0": np.mean(e != 0), "BPDA: pixels ≠ 0": np.mean(b != 0),
             "cosine(exact, BPDA)": cosine(e, b)} for s, (e, b) in gradients.items()]


def _best(part: pd.DataFrame, column: str) -> float:
    return part[column].max() if len(part) else float("nan")


def blur_credit(transfer_summary: pd.DataFrame, *, kinds: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """Per image set and defended model, its accuracy on transferred digits beyond the best control, and the glue.

    Args:
        transfer_summary: mean ``correct`` per ``images`` set, ``role`` and ``receiver``; roles other than
            ``"defended"`` are controls. The set whose name starts with ``boundary`` is chapter 1's digits.
        kinds: the image sets, in the order of the table.
    """
    beyond = []
    for kind in kinds:
        part = transfer_summary[transfer_summary["images"] == kind]
        control_best = part.loc[part["role"] != "defended", "correct"].max()
        for _, r in part[part["role"] == "defended"].iterrows():
            beyond.append({"images": kind, "model": r["receiver"], "correct": r["correct"], "best control": control_best,
                           "credited to the blur": r["correct"] - control_best})
    beyond = pd.DataFrame(beyond)
    on_boundary = beyond[beyond["images"].str.startswith("boundary")]
    confident = beyond[~beyond["images"].str.startswith("boundary")]
    confident_beyond = _best(confident, "credited to the blur")
    conclusion = ("so past the boundary the blur does what neither another seed nor random noise does: against an "
                  "oblivious attacker it helps" if confident_beyond > MIN_ROBUST_GAIN else "so even past the boundary the blur "
                  "does no more than the controls: what it seems to do against an oblivious attacker is the images' fragility")
    glued = {"transfer_best_correct": _best(on_boundary, "correct") * 100,
             "transfer_control_correct": _best(on_boundary, "best control") * 100,
             "transfer_beyond": _best(on_boundary, "credited to the blur") * 100, "confident_beyond": confident_beyond * 100,
             "confident_control": _best(confident, "best control") * 100, "confident_best": _best(confident, "correct") * 100,
             "transfer_conclusion": conclusion}
    return beyond, glued


def paper_attack_glued(paper_table: pd.DataFrame) -> dict:
    """The paper's attack on chapter 6's models: the undefended median, the defended range, BPDA's wins, success."""
    strongest = paper_table[paper_table["defence"] != "none"].sort_values("median_l2").groupby("defence", sort=False).first()
    lowest = paper_table["success_rate"].min()
    return {"paper_none_median": paper_table.loc[paper_table["defence"] == "none", "median_l2"].iloc[0],
            "paper_defended_lo": strongest["median_l2"].min() if len(strongest) else float("nan"),
            "paper_defended_hi": strongest["median_l2"].max() if len(strongest) else float("nan"),
            "paper_bpda_wins": int((strongest["gradient"] == "BPDA").sum()), "paper_n_defended": len(strongest),
            "paper_success": "on every digit of every model" if lowest == 1 else f"on at least {lowest:.0%} of the digits of every model"}


def square_wins(cascades: Mapping[str, Mapping[int, Cascade]]) -> dict[str, int]:
    """Per model, the digit-budget pairs (summed over seeds) the gradient-free attack broke after every gradient attack
    had left them correct."""
    return {spec: int(sum(c.gradient_free_breaks().sum() for c in by.values())) for spec, by in cascades.items()}


def gradient_additions(cascades: Mapping[str, Mapping[int, Cascade]], *, defended: Sequence[str]
                       ) -> dict[str, tuple[int, int | None]]:
    """Per defended model, the pairs (summed over seeds) the APGD variants broke first with the exact gradient and
    with BPDA (``None`` where BPDA did not run: a linear filter) — after PGD, which already used both."""
    def added(spec: str, view: str) -> int | None:
        names = set(attack_names("fixed_budget", gradient=view))
        ran = [b for c in cascades[spec].values() for name, b in c.broke.items() if name in names]
        return int(sum(b.sum() for b in ran)) if ran else None

    return {spec: (added(spec, "exact") or 0, added(spec, "BPDA")) for spec in defended}


def largest_gap(flags: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]]) -> float:
    """The largest lowering of robust accuracy (mean over seeds) by the strong attacks below PGD's worst case, over
    models and strong budgets."""
    return max(float(np.max(np.mean([f["PGD worst"][k].mean(axis=1) - f["worst"][k].mean(axis=1) for k in f["worst"]], axis=0)))
               for f in flags.values())


def strong_glued(*, additions: Mapping[str, tuple[int, int | None]], gradient_free_wins: Sequence[str],
                 largest_drop: float) -> dict:
    """The strong attacks' sentences: what each gradient added after PGD, the drop below PGD, Square's wins."""
    parts = [f"{label}: {exact} with the exact gradient, " + (f"{bpda} with BPDA" if bpda is not None else "BPDA not run (a linear filter)")
             for label, (exact, bpda) in additions.items()]
    return {
        "gradient_sentence": "After PGD, the APGD attacks broke these digit-budget pairs first (summed over seeds) — "
        + "; ".join(parts) if parts else "No defended model was attacked",
        "largest_drop": largest_drop * 100,
        "square_sentence": "Square broke no digit that every gradient attack had left intact: no sign of gradient masking."
        if not gradient_free_wins else "Square broke digits that every gradient attack had left intact ("
        + "; ".join(gradient_free_wins) + "): the gradients were partly masked there, and C6 cannot be confirmed."}


def evaluation_text(*, n_digits: int, n_seeds: int) -> str:
    """What C6's evidence says it stands on."""
    return (f"worst case of PGD, APGD (CE, DLR; exact gradient, and BPDA where the filter is not linear), targeted APGD and Square on "
            f"{n_digits} digits × {n_seeds} training seeds")


def middle_budget_glued(curves: pd.DataFrame, *, budgets: Sequence[float], defended: Sequence[str],
                        names: Mapping[str, str]) -> tuple[float, dict]:
    """The middle non-zero budget, and the undefended, best defended and noise accuracies at it (worst case)."""
    nonzero = np.asarray(budgets) > 0
    mid = float(np.asarray(budgets)[nonzero][(nonzero.sum() - 1) // 2]) if nonzero.any() else 0.0
    worst_at = curves[(curves["attack"] == "worst") & (curves["budget"] == mid)].set_index("model")
    best_mid = max(defended, key=lambda s: worst_at.loc[s, "accuracy"]) if defended else "none"
    noise_at = curves[(curves["attack"] == "noise") & (curves["budget"] == mid)].set_index("model")
    return mid, {"mid_budget": mid, "mid_none": worst_at.loc["none", "accuracy"] * 100, "mid_best_label": names[best_mid],
                 "mid_best": worst_at.loc[best_mid, "accuracy"] * 100, "mid_noise_none": noise_at.loc["none", "accuracy"] * 100}


def added_rows(cascades: Mapping[str, Mapping[int, Cascade]], *, names: Mapping[str, str]) -> list[dict]:
    """Per model and attack of the cascade (``"PGD worst"`` first), the digit-budget pairs it broke first, summed over
    seeds and strong budgets."""
    return [{"model": names[spec], "attack": attack, "pairs": int(counts.sum())}
            for spec, by in cascades.items() for attack, counts in added_counts(by).items()]


def design_glued(*, n_digits: int, n_seeds: int, n_models: int) -> dict:
    """C6's design, by glue name (:func:`helpers.studies.shares.c6_design`)."""
    design = c6_design(n_digits=n_digits, n_seeds=n_seeds, n_models=n_models)
    return {"design_digits": n_digits, "design_seeds": n_seeds, "design_se": design.standard_error * 100,
            "design_detectable": design.detectable * 100, "design_power": POWER * 100, "pilot": PILOT}


def measured_design_glued(measured: Mapping[str, C6Design], planned: C6Design) -> dict:
    """``design_measured``: how far C6's plan held — per defended model, the smallest gain detected with :data:`POWER`
    and the standard error of its gain, measured on this run's data (:func:`helpers.studies.shares.measured_design`),
    beside the plan."""
    if not measured:
        return {"design_measured": "With a single training seed the variance between seeds cannot be measured, so this "
                                   "run cannot check the plan."}
    bar = MIN_ROBUST_GAIN * 100
    parts = [f"{d.detectable * 100:.1f} points for {label}" for label, d in measured.items()]
    each = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    errors = [round(d.standard_error * 100, 1) for d in measured.values()]
    spread = f"{min(errors):.1f}" if min(errors) == max(errors) else f"{min(errors):.1f}–{max(errors):.1f}"
    above = [label for label, d in measured.items() if d.detectable * 100 >= bar]
    verdict = (f"All lie below the {bar:.0f}-point bar, as planned." if not above else
               f"For {' and '.join(above)} that is not below the {bar:.0f}-point bar: a true gain of the bar's size could go "
               "unseen there, so an inconclusive verdict says less than the plan promised.")
    return {"design_measured": f"Measured the same way on this run's own data, the smallest gain detected with "
                               f"{POWER:.0%} power is {each} (planned {planned.detectable * 100:.1f}; standard "
                               f"errors {spread} points against {planned.standard_error * 100:.1f} planned). {verdict}"}


def strong_readout(cascades: Mapping[str, Mapping[int, Cascade]], flags: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]], *,
                   names: Mapping[str, str], defended: Sequence[str]) -> tuple[list[str], dict]:
    """Square's wins per model (``"label: n digit-budget pairs"``, for C6) and the strong attacks' glue."""
    free_wins = [f"{names[s]}: {n} digit-budget pairs" for s, n in square_wins(cascades).items() if n]
    additions = {names[s]: n for s, n in gradient_additions(cascades, defended=defended).items()}
    return free_wins, strong_glued(additions=additions, gradient_free_wins=free_wins, largest_drop=largest_gap(flags))
