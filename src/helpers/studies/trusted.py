"""Chapter 7's loops, as functions: the trusted defences' clean accuracy, smoothing's certificates and attacks,
adversarial training under chapter 6's attacks and its sanity checks, per-image rows (``07_trusted``), the
certificate sentence, and the rows of ``alternatives.csv`` and the C7 table (``07_comparison``)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from helpers.attacks.adaptive import RobustnessStudy, robustness_study
from helpers.core.engine import predict_logits
from helpers.core.paths import relative
from helpers.defences.smoothing import certify, largest_certifiable_radius
from helpers.studies.adaptive_study import zero_gradient_count
from helpers.studies.alternatives import (
    certificate_violations,
    certified_flags,
    method_rows,
    smoothed_pgd,
    smoothed_predict,
)
from helpers.studies.cascade import Cascade, cascade, cascade_flags, doubled_effort
from helpers.studies.intervals import BOOTSTRAP_SEEDS, other_bootstrap_seed, with_stability
from helpers.studies.sanity import certificate_check, eot_effort_check, sanity_checks
from helpers.studies.shares import StudyDigits, alternative_gains
from helpers.studies.verdicts import Alternative, c7_verdict


def trusted_clean_flags(models: Sequence[keras.Model], images: np.ndarray, labels: np.ndarray, *, sigma: float | None,
                        n0: int, seed: int) -> np.ndarray:
    """(seeds, images): each seed's model classifies the clean digit correctly; with ``sigma``, the smoothed classifier
    (its majority over ``n0`` noisy copies)."""
    if sigma is None:
        return np.stack([predict_logits(m, images, batch_size=256).argmax(axis=1) == labels for m in models])
    return np.stack([smoothed_predict(m, images, sigma=sigma, n=n0, seed=seed) == labels for m in models])


def seed_mean_accuracy(flags: np.ndarray) -> float:
    """The mean over seeds of each seed's accuracy, from (seeds, images) flags (:func:`trusted_clean_flags`)."""
    return float(np.mean([f.mean() for f in flags]))


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


@dataclass(frozen=True)
class SmoothingStudy:
    """Randomized smoothing per (regime, seed) on the strong subset: certified and attacked flags over the strong
    budgets, the certified-accuracy curve over ``radii``, CPU seconds per digit and the certificate violations."""

    radii: np.ndarray
    certified: dict[tuple[str, int], np.ndarray]
    attacked: dict[tuple[str, int], np.ndarray]
    curves: dict[tuple[str, int], np.ndarray]
    cost: dict[tuple[str, str], float]  # (regime, "certified" | "attacked") → CPU s per digit, mean over seeds
    violations: dict[str, np.ndarray]  # regime → per budget, the most digits certified where the attack broke them


def smoothing_study(models: Mapping[tuple[str, int], keras.Model], *, regimes: Mapping[float, str], seeds: Sequence[int],
                    images: np.ndarray, labels: np.ndarray, budgets: np.ndarray, radii: np.ndarray, n0: int, n: int,
                    alpha: float, steps: int, samples: int, seed: int) -> SmoothingStudy:
    """Certify (Cohen et al.) and attack (EOT-PGD, ``steps`` × ``samples``) every smoothed model (``regimes``: σ → its
    training regime; ``models``: (regime, seed) → model) on ``images`` at ``budgets``."""
    certified, attacked, curves, seconds = {}, {}, {}, {}
    for sigma, regime in regimes.items():
        for k in seeds:
            start = time.process_time()
            cert = certify(models[regime, k], images, sigma=sigma, n0=n0, n=n, alpha=alpha, seed=seed)
            seconds[regime, "certified", k] = (time.process_time() - start) / len(images)
            certified[regime, k], curves[regime, k] = certified_flags(cert, labels, budgets), cert.accuracy_at(labels, radii)
            start = time.process_time()
            attacked[regime, k] = smoothed_pgd(models[regime, k], images, labels, sigma=sigma, budgets=budgets, steps=steps,
                                               samples=samples, n_predict=n, seed=seed, clean_prediction=cert.majority).correct
            seconds[regime, "attacked", k] = (time.process_time() - start) / len(images)
    cost = {(r, m): float(np.mean([seconds[r, m, k] for k in seeds])) for r in regimes.values() for m in ("certified", "attacked")}
    violations = {r: np.max([certificate_violations(certified[r, k], attacked[r, k]) for k in seeds], axis=0) for r in regimes.values()}
    return SmoothingStudy(radii=radii, certified=certified, attacked=attacked, curves=curves, cost=cost, violations=violations)


def eot_effort_rows(found: SmoothingStudy, models: Mapping[tuple[str, int], keras.Model], *, names: Mapping[str, str],
                    regimes: Mapping[float, str], seed_model: int, images: np.ndarray, labels: np.ndarray, budgets: np.ndarray,
                    steps: int, samples: int, n: int, seed: int) -> list[dict]:
    """Per smoothed model (the training seed ``seed_model``), EOT-PGD again with twice the steps and twice the noise
    draws per step (another random seed) on every digit and strong budget the usual attack left correct, judged by the
    same ``n`` noisy copies: :func:`helpers.studies.sanity.eot_effort_check`'s row."""
    budgets = np.asarray(budgets, dtype=np.float64)
    rows = []
    for sigma, regime in regimes.items():
        usual = np.asarray(found.attacked[regime, seed_model], dtype=bool)
        again = usual.copy()
        for b in np.flatnonzero(budgets > 0):
            pick = np.flatnonzero(usual[b])
            if len(pick):
                rerun = smoothed_pgd(models[regime, seed_model], images[pick], labels[pick], sigma=sigma, budgets=[budgets[b]],
                                     steps=2 * steps, samples=2 * samples, n_predict=n, seed=seed + 1)
                again[b, pick] &= rerun.correct[-1]
        at = budgets > 0
        rows.append(eot_effort_check(model=names[regime], usual=usual[at].mean(axis=1), doubled=again[at].mean(axis=1),
                                     n_images=len(images)))
    return rows


def smoothing_rows(found: SmoothingStudy, *, regimes: Mapping[float, str], seeds: Sequence[int], budgets: Sequence[float],
                   n: int, alpha: float) -> list[dict]:
    """Per σ and measure (certified, attacked): accuracy at each budget (mean over seeds), CPU seconds per digit, and
    the largest radius ``n`` copies can ever certify at level ``alpha``."""
    return [{"noise σ": s, "measure": measure,
             **{f"ε = {e:g}": np.mean([flags[regime, k][b].mean() for k in seeds]) for b, e in enumerate(budgets)},
             "CPU s per digit": found.cost[regime, measure],
             "largest certifiable r": largest_certifiable_radius(sigma=s, n=n, alpha=alpha) if measure == "certified" else np.nan}
            for s, regime in regimes.items() for measure, flags in (("certified", found.certified), ("attacked", found.attacked))]


@dataclass(frozen=True)
class TrainedStudy:
    """Adversarial training under chapter 6's attacks: PGD on every digit, the strong suite on the subset as chapter 6
    runs it (a cascade: each attack on the pairs every earlier one left)."""

    studies: dict[int, RobustnessStudy]  # seed → PGD study of the model named "AT"
    cascades: dict[int, Cascade]  # seed → what each strong attack broke first
    flags: dict[str, dict[int, np.ndarray]]  # "PGD worst", each attack, worst cases → seed → (strong budgets, subset) flags
    cpu_seconds_per_image: float  # of the strong suite, per digit and seed

    def pgd_accuracy(self) -> np.ndarray:
        """PGD's accuracy on every digit at chapter 6's budgets, mean over seeds."""
        return np.mean([s.attacks["AT"]["exact"].accuracy for s in self.studies.values()], axis=0)


def adversarial_training_study(models: Mapping[int, keras.Model], digits: StudyDigits, *, budgets: Sequence[float],
                               grid: np.ndarray, pgd_steps: int, noise_draws: int, steps: int, restarts: int,
                               square_queries: int, seed: int) -> TrainedStudy:
    """Chapter 6's PGD study on every digit and its strong attacks on the subset, as chapter 6's cascade
    (:func:`helpers.studies.cascade.cascade`, from PGD's worst case), for each seed's model (``models``)."""
    studies = {k: robustness_study({"AT": m}, digits.images, digits.labels, budgets=budgets, steps=pgd_steps,
                                   noise_draws=noise_draws, seed=seed) for k, m in models.items()}
    at = [int(np.flatnonzero(np.isclose(budgets, e))[0]) for e in grid]
    settings = {"steps": steps, "restarts": restarts, "square_queries": square_queries, "seed": seed}
    start = time.process_time()
    found = {k: cascade(m, digits.xs, digits.ys, budgets=grid, after_pgd=studies[k].worst("AT")[at][:, digits.sub],
                        settings=settings) for k, m in models.items()}
    cost = (time.process_time() - start) / len(digits.xs) / len(models)
    return TrainedStudy(studies=studies, cascades=found, flags=cascade_flags(found), cpu_seconds_per_image=cost)


def adversarial_training_checks(models: Mapping[int, keras.Model], digits: StudyDigits, found: TrainedStudy, *, label: str,
                                unbounded_success: float, budgets: Sequence[float], grid: np.ndarray, steps: int,
                                restarts: int, seed: int, n_images: int) -> list[dict]:
    """Chapter 6's sanity checks (:func:`helpers.studies.sanity.sanity_checks`) for the adversarially trained models;
    on the first seed's model, twice the effort on every pair the cascade left (every strong budget) and the
    zero-gradient count at the middle strong budget."""
    first = next(iter(models))
    middle = float(grid[1:][(len(grid) - 2) // 2])
    pgd = {k: s.attacks["AT"]["exact"].correct for k, s in found.studies.items()}
    return sanity_checks(
        budgets=budgets, unbounded_success={label: unbounded_success},
        curves={label: {f"{a}, seed {k}": f.mean(axis=1) for a, by in {"PGD": pgd, **found.flags}.items() for k, f in by.items()}},
        worst={label: found.pgd_accuracy()},
        noise={label: np.mean([s.noise["AT"].accuracy for s in found.studies.values()], axis=0)},
        square_reach={}, more_effort={label: tuple(a[1:] for a in doubled_effort(models[first], found.cascades[first], digits.xs, digits.ys,
                                                                            steps=steps, restarts=restarts, seed=seed)[1:])},
        transfer={}, zero_gradients={label: zero_gradient_count(models[first], digits.xs, digits.ys, radius=middle, seed=seed)},
        n_images=n_images, n_strong=len(digits.xs), effort_scope="first seed, every strong budget")


def trusted_images(fits: Mapping[tuple[str, int], object], digits: StudyDigits, *, names: Mapping[str, str], adversarial: str,
                   seeds: Sequence[int], budgets: Sequence[float], smoothing: SmoothingStudy, trained: TrainedStudy,
                   clean: Mapping[str, np.ndarray]) -> list[dict]:
    """Every row of ``alternatives_images.csv`` (:func:`trusted_image_rows` per method and seed, in order): the
    ``"clean"`` measure (``clean``: per method, (seeds, images) flags on every digit of chapter 6, at budget 0), then
    the attacked and certified ones on the strong subset."""
    def measures(key: str, k: int) -> dict[str, np.ndarray]:
        if key == adversarial:
            return {"attacked": trained.flags["worst"][k]}
        return {"attacked": smoothing.attacked[key, k], "certified": smoothing.certified[key, k]}

    rows = []
    for key in names:
        for i, k in enumerate(seeds):
            common = dict(method=names[key], parameter=key, seed=k, model_file=relative(fits[key, k].path))
            rows += trusted_image_rows(**common, test_index=digits.pick, labels=digits.labels, budgets=[0.0],
                                       measures={"clean": clean[key][i][None]})
            rows += trusted_image_rows(**common, test_index=digits.subset_index, labels=digits.ys, budgets=budgets,
                                       measures=measures(key, k))
    return rows


def trusted_methods(*, names: Mapping[str, str], adversarial: str, clean: Mapping[str, float], seconds: Mapping[str, float],
                    smoothing: SmoothingStudy, trained: TrainedStudy) -> list[dict]:
    """``trusted.json``'s methods: per method its clean accuracy, CPU costs and (adversarial training) PGD's curve."""
    return [{"parameter": key, "name": names[key],
             "method": "adversarial training" if key == adversarial else "randomized smoothing",
             "clean_accuracy": float(clean[key]), "train_cpu_seconds": float(seconds[key]),
             "certify_cpu_seconds_per_image": None if key == adversarial else smoothing.cost[key, "certified"],
             "attack_cpu_seconds_per_image": trained.cpu_seconds_per_image if key == adversarial else smoothing.cost[key, "attacked"],
             "pgd_accuracy": trained.pgd_accuracy().tolist() if key == adversarial else None} for key in names]


def c7_claim(blur_share: np.ndarray | None, measures: Mapping[str, tuple[np.ndarray, np.ndarray]], *, names: Mapping[str, str],
             clean_gaps: Mapping[str, float], blur: str | None, statistic: str, failed_checks: Sequence[str], n_checks: int,
             n_resamples: int, seed: int) -> tuple[list[Alternative], dict]:
    """C7 (:func:`helpers.studies.verdicts.c7_verdict`): the blur's paired gains over each alternative
    (:func:`helpers.studies.shares.alternative_gains`) and the verdict, checked under other bootstrap seeds
    (:func:`helpers.studies.verdicts.with_stability`). ``blur``: its name; None when chapter 5 chose no Gaussian."""
    def decided(bootstrap_seed: int) -> tuple[list[Alternative], dict]:
        compared = (alternative_gains(blur_share, measures, names=names, clean_gaps=clean_gaps, n_resamples=n_resamples,
                                      seed=bootstrap_seed) if blur else [])
        return compared, c7_verdict(compared, blur=blur, statistic=statistic, failed_checks=failed_checks, n_checks=n_checks)

    compared, verdict = decided(seed)
    if not blur:
        return compared, verdict
    return compared, with_stability(verdict, [decided(other_bootstrap_seed(seed, i))[1]["verdict"] for i in range(BOOTSTRAP_SEEDS)])


def certificate_rows(found: SmoothingStudy, *, names: Mapping[str, str], regimes: Mapping[float, str], budgets: Sequence[float],
                     n: int, alpha: float, n_images: int) -> tuple[list[dict], str]:
    """The certificate sanity rows of the smoothed models whose check can fail, and a sentence naming those left out:
    where no budget lies within the largest radius ``n`` copies can certify, nothing is ever certified and the check
    would pass by construction."""
    rows, left_out = [], []
    for sigma, regime in regimes.items():
        largest = largest_certifiable_radius(sigma=sigma, n=n, alpha=alpha)
        row = certificate_check(model=names[regime], budgets=budgets, violations=found.violations[regime], n_images=n_images,
                                largest_radius=largest)
        if row is None:
            left_out.append(f"σ = {sigma:g} (largest certifiable radius {largest:.2f})")
        else:
            rows.append(row)
    sentence = (f"Every noise level can certify one of the budgets with n = {n} copies, so each certificate check can fail."
                if not left_out else f"Left out of the sanity checks, because with n = {n} copies they cannot certify any "
                f"of the budgets and so cannot fail: {'; '.join(left_out)}.")
    return rows, sentence
