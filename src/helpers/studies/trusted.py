"""Chapter 7's loops, as functions: the trusted defences' clean accuracy and per-image rows (``07_trusted``), the
certificate sentence, and the rows of ``alternatives.csv`` and the C7 table (``07_comparison``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from helpers.studies.alternatives import method_rows, smoothed_predict
from helpers.studies.evaluate import clean_accuracy
from helpers.studies.verdicts import Alternative


def trusted_clean_accuracy(models: Sequence[keras.Model], images: np.ndarray, labels: np.ndarray, *, sigma: float | None,
                           n0: int, seed: int) -> float:
    """Mean over the seeds' models of the clean accuracy; with ``sigma``, of the smoothed classifier (``n0`` draws)."""
    if sigma is None:
        return np.mean([clean_accuracy(m, images, labels) for m in models])
    return np.mean([np.mean(smoothed_predict(m, images, sigma=sigma, n=n0, seed=seed) == labels) for m in models])


def trusted_image_rows(*, method: str, parameter: str, seed: int, model_file: str, measures: Mapping[str, np.ndarray],
                       test_index: np.ndarray, labels: np.ndarray, budgets: Sequence[float]) -> list[dict]:
    """``alternatives_images.csv`` rows of one model: per measure, budget and digit, whether it is robust."""
    return [{"method": method, "parameter": parameter, "seed": seed, "model_file": model_file, "test_index": int(index),
             "label": int(labels[i]), "budget": float(e), "measure": measure, "robust": bool(flags[b, i])}
            for measure, flags in measures.items() for b, e in enumerate(budgets) for i, index in enumerate(test_index)]


def violation_sentence(violations: Mapping[str, np.ndarray]) -> str:
    """Whether any digit was certified at a radius where the attack broke it (``violations``: counts per budget)."""
    worst_gap = max(int(v.max()) for v in violations.values())
    return ("No digit was certified at a radius where the attack broke it: every certificate held up against the attack."
            if worst_gap == 0 else f"In at least one seed, {worst_gap} digit(s) were certified at a radius where the attack broke "
            "them — a certificate should fail only with probability α, so this points to a bug, and C7 cannot be decided "
            "(see the sanity checks).")


def comparison_rows(
    *, names: Mapping[str, str], blurs: Sequence[str], adversarial: str, worst_flags: Mapping[str, np.ndarray],
    trusted_flags: Mapping[tuple[str, str], np.ndarray], seeds: Sequence[int], budgets: Sequence[float],
    clean: Mapping[str, float], seconds: Mapping[str, float], cost: Mapping[tuple[str, str], float], n_resamples: int, seed: int,
) -> list[dict]:
    """``alternatives.csv``: every method's rows (:func:`helpers.studies.alternatives.method_rows`) per measure."""
    def per_seed(flags: np.ndarray) -> dict[int, np.ndarray]:
        return dict(zip(seeds, flags, strict=True))

    rows = []
    for key in names:
        if key in worst_flags:
            measured = {"attacked (chapter 6 worst case)": per_seed(worst_flags[key])}
        elif key == adversarial:
            measured = {"attacked (worst case)": per_seed(trusted_flags[key, "attacked"])}
        else:
            measured = {"attacked (EOT-PGD)": per_seed(trusted_flags[key, "attacked"]),
                        "certified": per_seed(trusted_flags[key, "certified"])}
        method = ("blur" if key in blurs else "none" if key == "none" else "adversarial training" if key == adversarial
                  else "randomized smoothing")
        for measure, by_seed in measured.items():
            per_image = cost.get((key, "certified" if measure == "certified" else "attacked"), float("nan"))
            rows += method_rows(method=method, parameter=key, measure=measure, budgets=budgets, flags=by_seed,
                                clean_accuracy=clean[key], train_cpu_seconds=seconds[key], eval_cpu_seconds_per_image=per_image,
                                n_resamples=n_resamples, seed=seed)
    return rows


def compared_rows(compared: Sequence[Alternative]) -> list[dict]:
    """The C7 table: per alternative, the clean-accuracy gap and the blur's gains over both bounds, with intervals."""
    return [{"alternative": a.name, "clean accuracy vs blur": a.clean_gap, "blur − attacked": a.against_upper.effect,
             "interval (attacked)": f"[{a.against_upper.low:+.1%}, {a.against_upper.high:+.1%}]",
             "blur − pessimistic": a.against_lower.effect,
             "interval (pessimistic)": f"[{a.against_lower.low:+.1%}, {a.against_lower.high:+.1%}]"} for a in compared]
