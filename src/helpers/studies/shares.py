"""What chapters 6 and 7 share to reach C6 and C7: the same digits, the evaluation C6 stands on, the robust
shares and the gains compared at a family-wise level.

* :func:`study_digits` — chapter 6's digits (and its strong subset), drawn once; chapter 7 reads the same ones.
* :func:`evaluation_choice` — whether C6 stands on the strong attacks' worst case or on PGD's.
* :func:`robust_shares` — the per-seed, per-image robust share over the strong budgets.
* :func:`family_level` and :func:`alternative_gains` — chapter 7's comparisons of the blur with each alternative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from helpers.core.validate import check_int
from helpers.studies.adaptive_study import Gain, paired_gains, robust_share
from helpers.studies.verdicts import FAMILY_ALPHA, MIN_ACCURACY_EFFECT, Alternative


@dataclass(frozen=True)
class StudyDigits:
    """The test digits of chapters 6 and 7: ``images`` (all attacked) and ``xs`` (the strong subset, their first)."""

    pick: np.ndarray  # test-set indices, in the study's order
    images: np.ndarray
    labels: np.ndarray
    sub: slice  # the strong subset within ``images``
    xs: np.ndarray
    ys: np.ndarray

    @property
    def subset_index(self) -> np.ndarray:
        """Test-set indices of the strong subset."""
        return self.pick[self.sub]


def study_digits(x_test: np.ndarray, y_test: np.ndarray, *, n_adaptive: int, strong_images: int, seed: int) -> StudyDigits:
    """Chapter 6's ``n_adaptive`` digits (a seeded permutation of the test set) and its first ``strong_images``."""
    n_adaptive = check_int("n_adaptive", n_adaptive, minimum=1)
    strong_images = check_int("strong_images", strong_images, minimum=1)
    if len(x_test) != len(y_test):
        raise ValueError(f"y_test: {len(y_test)} labels for {len(x_test)} images")
    pick = np.random.default_rng(seed).permutation(len(x_test))[:n_adaptive]
    images, labels = x_test[pick], y_test[pick]
    sub = slice(0, min(strong_images, n_adaptive))
    return StudyDigits(pick=pick, images=images, labels=labels, sub=sub, xs=images[sub], ys=labels[sub])


@dataclass(frozen=True)
class EvaluationChoice:
    """Which worst case C6 stands on: the strong attacks' (on the subset) or PGD's (on every digit)."""

    largest_drop: float  # the largest mean lowering of robust accuracy by the strong attacks over PGD
    use_strong: bool

    @property
    def name(self) -> str:
        """``"strongest"`` or ``"PGD"``, as ``adaptive_claims.json`` records it."""
        return "strongest" if self.use_strong else "PGD"


def evaluation_choice(strong_flags: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]], *, seeds: Sequence[int]
                      ) -> EvaluationChoice:
    """The strong attacks decide C6 when they lower robust accuracy below PGD's by more than ``MIN_ACCURACY_EFFECT``.

    Args:
        strong_flags: per model, the (budgets, images) flags per seed of ``"PGD worst"`` and ``"worst"`` (every
            attack) on the strong subset; the first budget is ε = 0 and is left out.
        seeds: the training seeds to average over.
    """
    if not strong_flags or not len(seeds):
        raise ValueError("strong_flags: expected at least one model and one seed")
    lowering = {spec: np.mean([flags["PGD worst"][k].mean(axis=1) - flags["worst"][k].mean(axis=1) for k in seeds], axis=0)
                for spec, flags in strong_flags.items()}
    largest_drop = max(float(v[1:].max()) for v in lowering.values())
    return EvaluationChoice(largest_drop=largest_drop, use_strong=largest_drop > MIN_ACCURACY_EFFECT)


def budget_set(grid: Sequence[float]) -> str:
    """The strong budgets (the grid without its leading ε = 0) as a set, e.g. ``"{1, 2}"``."""
    return "{" + ", ".join(f"{e:g}" for e in grid[1:]) + "}"


def share_statistic(grid: Sequence[float]) -> str:
    """The name of the statistic C6 and C7 compare."""
    return "robust share over ε ∈ " + budget_set(grid)


def robust_shares(flags: Sequence[np.ndarray] | np.ndarray, *, budgets: Sequence[float]) -> np.ndarray:
    """(seeds, images) robust shares over 0 < ε ≤ the last budget, from per-seed (budgets, images) flags."""
    if not len(flags):
        raise ValueError("flags: expected the flags of at least one seed")
    return np.stack([robust_share(f, budgets, up_to=float(budgets[-1])) for f in flags])


def c6_shares(
    choice: EvaluationChoice, *, strong_worst: Mapping[str, Mapping[int, np.ndarray]], pgd_worst: Mapping[str, Mapping[int, np.ndarray]],
    at: Sequence[int], seeds: Sequence[int], names: Mapping[str, str], budgets: Sequence[float],
) -> dict[str, np.ndarray]:
    """Per model name, the (seeds, images) robust shares C6 compares: on the strong worst case or PGD's, as chosen.

    Args:
        strong_worst: per model, seed → (strong budgets, subset) flags of every attack's worst case.
        pgd_worst: per model, seed → (budgets, images) flags of PGD's worst case; ``at`` picks the strong budgets.
    """
    chosen = {spec: [strong_worst[spec][k] if choice.use_strong else pgd_worst[spec][k][at] for k in seeds] for spec in strong_worst}
    return {names[s]: robust_shares(np.stack(flags), budgets=budgets) for s, flags in chosen.items()}


def family_level(n_compared: int) -> float:
    """Each comparison's level so that ``n_compared`` of them hold together at 1 − ``FAMILY_ALPHA`` (Bonferroni)."""
    n_compared = check_int("n_compared", n_compared, minimum=1)
    return 1 - FAMILY_ALPHA / n_compared


def alternative_gains(
    blur_share: np.ndarray, measures: Mapping[str, tuple[np.ndarray, np.ndarray]], *, names: Mapping[str, str],
    clean_gaps: Mapping[str, float], n_resamples: int, seed: int,
) -> list[Alternative]:
    """The blur's paired gains over each alternative's (attacked, pessimistic) robust shares, at the family level.

    Args:
        blur_share: the blur's (seeds, images) robust shares.
        measures: per alternative, its (upper, lower) robust shares: attacked, and certified where there is one.
        names: per alternative, its name in the verdict.
        clean_gaps: per alternative, its clean accuracy minus the blur's.
    """
    family = family_level(len(measures))
    compared = []
    for key, (upper, lower) in measures.items():
        against: dict[str, Gain] = {
            bound: paired_gains({"blur": blur_share, key: values}, reference=key, n_resamples=n_resamples, seed=seed,
                                level=family)["blur"]
            for bound, values in (("upper", upper), ("lower", lower))}
        compared.append(Alternative(name=names[key], clean_gap=clean_gaps[key], against_upper=against["upper"],
                                    against_lower=against["lower"]))
    return compared
