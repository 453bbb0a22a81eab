"""What chapters 6 and 7 share to reach C6 and C7: the same digits, C6's design, the robust shares and the gains
compared at a family-wise level.

* :func:`study_digits` — chapter 6's digits (and chapter 7's subset, their first), drawn once; chapter 7 reads the same ones.
* :func:`c6_design` — the smallest gain C6's digits and seeds detect, planned before the data;
  :func:`measured_design` — the same from the run's own variances, to show how far the plan held.
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
    return _design(PLANNING_VARIANCE, n_digits=n_digits, n_seeds=n_seeds, n_models=n_models)


def _design(variance: Mapping[str, float], *, n_digits: int, n_seeds: int, n_models: int) -> C6Design:
    error = float(np.sqrt(variance["digit"] / n_digits + variance["seed"] / n_seeds
                          + variance["residual"] / (n_digits * n_seeds)))
    z = NormalDist().inv_cdf(1 - FAMILY_ALPHA / (2 * n_models)) + NormalDist().inv_cdf(POWER)
    return C6Design(n_digits=n_digits, n_seeds=n_seeds, n_models=n_models, standard_error=error, detectable=z * error)


def gain_variance(defended: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The variance components of a gain in robust share, measured the way :data:`PLANNING_VARIANCE` was: ``defended``
    and ``reference`` are (seeds, digits) shares on the same digits; per model a two-way analysis of variance
    (method of moments, negative estimates set to 0) gives the seed and residual variances, summed over the two
    models, and the per-digit gains (mean over seeds) give the digit variance of the contrast."""
    defended, reference = np.asarray(defended, float), np.asarray(reference, float)
    if defended.ndim != 2 or defended.shape != reference.shape:
        raise ValueError(f"defended, reference: expected two (seeds, digits) arrays of one shape, got {defended.shape} "
                         f"and {reference.shape}")
    n_seeds, n_digits = defended.shape
    if n_seeds < 2 or n_digits < 2:
        raise ValueError(f"defended: at least 2 seeds and 2 digits are needed to split the variance, got {defended.shape}")

    def seed_and_residual(x: np.ndarray) -> tuple[float, float]:
        rows, columns = x.mean(axis=1), x.mean(axis=0)
        residual = float(((x - rows[:, None] - columns[None, :] + x.mean()) ** 2).sum() / ((n_seeds - 1) * (n_digits - 1)))
        return max(0.0, (n_digits * float(rows.var(ddof=1)) - residual) / n_digits), residual

    (seed_d, residual_d), (seed_r, residual_r) = seed_and_residual(defended), seed_and_residual(reference)
    contrast = defended.mean(axis=0) - reference.mean(axis=0)
    digit = max(0.0, float(contrast.var(ddof=1)) - (residual_d + residual_r) / n_seeds)
    return {"digit": digit, "seed": seed_d + seed_r, "residual": residual_d + residual_r}


def measured_design(shares: Mapping[str, np.ndarray], *, reference: str, n_models: int) -> dict[str, C6Design]:
    """Per model of ``shares`` (label → (seeds, digits) robust shares) other than ``reference``: C6's design with the
    variances measured on this run's data (:func:`gain_variance`) in place of the planning ones; empty with fewer than
    2 seeds or digits."""
    out: dict[str, C6Design] = {}
    if min(np.shape(shares[reference])) < 2:  # one seed (or one digit): the variance cannot be split
        return out
    for label, share in shares.items():
        if label != reference:
            n_seeds, n_digits = np.shape(share)
            out[label] = _design(gain_variance(share, shares[reference]), n_digits=n_digits, n_seeds=n_seeds, n_models=n_models)
    return out


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
