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
from helpers.core.contract import RobustnessResult
from helpers.defences.filters import Defence
from helpers.studies.adaptive_study import gradient_free_worst
from helpers.studies.verdicts import MIN_ACCURACY_EFFECT, MIN_ROBUST_GAIN


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


def square_wins(strong: Mapping[str, Mapping[int, Mapping[str, RobustnessResult]]],
                strong_flags: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]], *, seeds: Sequence[int]) -> dict[str, int]:
    """Per model, the digit-budget pairs the gradient-free attack broke that every gradient attack left intact."""
    return {spec: int(sum((~gradient_free_worst(strong[spec][k]) & strong_flags[spec]["gradient worst"][k]).sum() for k in seeds))
            for spec in strong}


def exact_gradient_wins(strong: Mapping[str, Mapping[int, Mapping[str, RobustnessResult]]], *, defended: Sequence[str],
                        seeds: Sequence[int]) -> list[str]:
    """The defended models on which the stronger APGD loss did better with the exact gradient than with BPDA."""
    def best_apgd(spec: str, view: str) -> float:
        return np.mean([min(strong[spec][k][name].accuracy[1:].mean() for name in attack_names("fixed_budget", gradient=view))
                        for k in seeds])

    return [s for s in defended if best_apgd(s, "exact") < best_apgd(s, "BPDA")]


def strong_glued(*, exact_wins: Sequence[str], n_defended: int, gradient_free_wins: Sequence[str], largest_drop: float,
                 use_strong: bool, n_strong: int, n_adaptive: int) -> dict:
    """The strong attacks' sentences: which gradient won, the drop below PGD and its consequence, Square's wins."""
    return {
        "gradient_sentence": f"The exact gradient through the filter was the stronger one for {len(exact_wins)} of the {n_defended} "
        "defended models" + (f" ({', '.join(exact_wins)}): skipping the filter with BPDA did not help the attacker there"
                             if exact_wins else "; BPDA was stronger for all of them"),
        "largest_drop": largest_drop * 100, "strong_decision": "more than" if use_strong else "at most",
        "strong_consequence": f"The verdict therefore uses the strongest attack's worst case on these {n_strong} digits."
        if use_strong else f"The verdict therefore uses PGD's worst case on all {n_adaptive} digits, which the stronger attacks "
        "could not significantly improve on.",
        "square_sentence": "Square broke no digit that every gradient attack had left intact: no sign of gradient masking."
        if not gradient_free_wins else "Square broke digits that every gradient attack had left intact ("
        + "; ".join(gradient_free_wins) + "): the gradients were partly masked there, and C6 cannot be confirmed."}


def evaluation_text(*, use_strong: bool, n_strong: int, n_adaptive: int) -> str:
    """What C6's evidence says it stands on."""
    return (f"worst case of PGD, APGD (CE, DLR; exact, BPDA) and Square on {n_strong} digits" if use_strong else
            f"worst case of PGD (exact and BPDA) on {n_adaptive} digits, the stronger attacks within {MIN_ACCURACY_EFFECT:.0%}")


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


def strong_readout(strong: Mapping[str, Mapping[int, Mapping[str, RobustnessResult]]],
                   strong_flags: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]], *, names: Mapping[str, str],
                   defended: Sequence[str], seeds: Sequence[int], largest_drop: float, use_strong: bool, n_strong: int,
                   n_adaptive: int) -> tuple[list[str], dict]:
    """Square's wins per model (``"label: n digit-budget pairs"``, for C6) and the strong attacks' glue."""
    free_wins = [f"{names[s]}: {n} digit-budget pairs" for s, n in square_wins(strong, strong_flags, seeds=seeds).items() if n]
    exact_wins = [names[s] for s in exact_gradient_wins(strong, defended=defended, seeds=seeds)]
    return free_wins, strong_glued(exact_wins=exact_wins, n_defended=len(defended), gradient_free_wins=free_wins,
                                   largest_drop=largest_drop, use_strong=use_strong, n_strong=n_strong, n_adaptive=n_adaptive)
