"""What chapters 6 and 7 share to reach C6 and C7: the same digits, C6's design, the robust shares and the gains
compared at a family-wise level.

* :func:`study_digits` — chapter 6's digits (and chapter 7's subset, their first), drawn once; chapter 7 reads the same ones.
* :func:`c6_design` — the smallest gain C6's digits and seeds detect, planned before the data.
* :func:`robust_shares` — the per-seed, per-image robust share over the strong budgets.
* :func:`family_level` and :func:`alternative_gains` — chapter 7's comparisons of the blur with each alternative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from helpers.core.validate import check_int
from helpers.studies.adaptive_study import Gain, paired_gains, robust_share
from helpers.studies.verdicts import FAMILY_ALPHA, PLANNING_VARIANCE, POWER, Alternative


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
class C6Design:
    """C6's design and its power, computed from the planning variances before any attack runs."""

    n_digits: int
    n_seeds: int
    n_models: int
    standard_error: float  # planned standard error of a defended model's gain in robust share
    detectable: float  # the smallest true gain found (Holm p < α, interval above 0) with probability POWER

    def sentence(self) -> str:
        """The design in words, for the verdict's evidence."""
        return (f"the design ({self.n_digits} digits × {self.n_seeds} seeds) detects a gain of {self.detectable:.1%} or more "
                f"with {POWER:.0%} power (planned standard error {self.standard_error:.1%})")


def c6_design(*, n_digits: int, n_seeds: int, n_models: int) -> C6Design:
    """The smallest gain in robust share the C6 comparison detects with probability :data:`POWER`.

    The planned variance of a gain (defended minus undefended mean share) is
    ``PLANNING_VARIANCE["digit"] / N + PLANNING_VARIANCE["seed"] / S + PLANNING_VARIANCE["residual"] / (N·S)`` for N
    digits and S seeds per model; a gain is detected when its family-wise interval (two-sided 1 − α/m for m defended
    models) lies above 0, so the smallest detectable one is (z_{1−α/2m} + z_power) standard errors."""
    n_digits = check_int("n_digits", n_digits, minimum=1)
    n_seeds = check_int("n_seeds", n_seeds, minimum=1)
    n_models = check_int("n_models", n_models, minimum=1)
    v = PLANNING_VARIANCE
    error = float(np.sqrt(v["digit"] / n_digits + v["seed"] / n_seeds + v["residual"] / (n_digits * n_seeds)))
    z = NormalDist().inv_cdf(1 - FAMILY_ALPHA / (2 * n_models)) + NormalDist().inv_cdf(POWER)
    return C6Design(n_digits=n_digits, n_seeds=n_seeds, n_models=n_models, standard_error=error, detectable=z * error)


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
