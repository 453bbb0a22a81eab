"""Chapter 6's long loops, as functions: the transfer controls, the paper's attack on every model, the PGD flags per
attack and seed, the strong attacks on every model and seed, the sanity checks with their inputs, and the per-image
rows of ``robustness_images.csv``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from helpers.attacks.adaptive import RobustnessStudy, bpda_model, robustness_study, transfer_rates
from helpers.attacks.registry import attacks_of
from helpers.core.paths import relative
from helpers.core.stats import bootstrap_ci
from helpers.defences.filters import Defence
from helpers.studies import adaptive_study as study
from helpers.studies.adaptive_readouts import evaluation_text
from helpers.studies.adaptive_study import curve_rows, noise_like, robustness_image_rows
from helpers.studies.cascade import Cascade, cascade, cascade_flags, doubled_effort
from helpers.studies.evaluate import attack_evaluation
from helpers.studies.intervals import BOOTSTRAP_SEEDS, other_bootstrap_seed, with_stability
from helpers.studies.sanity import failed_checks, failed_positive_only, sanity_checks
from helpers.studies.shares import C6Design, StudyDigits, c6_design, robust_shares, share_statistic
from helpers.studies.verdicts import PLANNED_MODELS, adaptive_verdict
from helpers.studies.workers import Job, model_job, run_jobs

NOISE_CONTROL = "control: + random noise of the same ‖δ‖₂"


@dataclass(frozen=True)
class StudyModels:
    """Chapter 6's models: per defence and seed, the first seed's, their labels and the defended ones."""

    by_seed: dict[str, dict[int, keras.Model]]
    models: dict[str, keras.Model]  # the first seed's, for the single-model sections
    names: dict[str, str]
    defended: list[str]
    files: dict[str, dict[int, Path]]  # where each model is saved (a worker process loads it from there)

    def job(self, function, spec: str, training_seed: int, /, **kwargs) -> Job:
        """``function(model, **kwargs)`` on the model of ``spec`` and ``training_seed``, to run with :func:`run_jobs`."""
        return model_job(function, self.by_seed[spec][training_seed], self.files[spec][training_seed], **kwargs)


def study_models(fits: Mapping[tuple[str, int], Any], *, roles: Sequence[str], seeds: Sequence[int]) -> StudyModels:
    """Group the trained models (``fits``: (defence, seed) → an object with ``.model`` and ``.path``) by defence and seed."""
    by_seed = {spec: {k: fits[spec, k].model for k in seeds} for spec in roles}
    return StudyModels(by_seed=by_seed, models={spec: by_seed[spec][seeds[0]] for spec in roles},
                       names={spec: Defence.parse(spec).label for spec in roles}, defended=[s for s in roles if s != "none"],
                       files={spec: {k: Path(fits[spec, k].path) for k in seeds} for spec in roles})


def pgd_studies(models: StudyModels, images: np.ndarray, labels: np.ndarray, *, budgets: Sequence[float], steps: int,
                noise_draws: int, seed: int, processes: int) -> dict[int, RobustnessStudy]:
    """Seed → chapter 6's PGD study (:func:`helpers.attacks.adaptive.robustness_study`) of every model, one job per model
    and seed in ``processes`` processes: each model's attacks and noise draws do not depend on the others'."""
    seeds = list(next(iter(models.by_seed.values())))
    jobs = [models.job(robustness_study_of, spec, k, name=spec, images=images, labels=labels, budgets=budgets, steps=steps,
                       noise_draws=noise_draws, seed=seed) for k in seeds for spec in models.by_seed]
    found = iter(run_jobs(jobs, processes=processes))
    studies = {}
    for k in seeds:
        parts = {spec: next(found) for spec in models.by_seed}
        studies[k] = RobustnessStudy(budgets=next(iter(parts.values())).budgets,
                                     attacks={spec: part.attacks[spec] for spec, part in parts.items()},
                                     noise={spec: part.noise[spec] for spec, part in parts.items()})
    return studies


def robustness_study_of(model: keras.Model, *, name: str, **kwargs) -> RobustnessStudy:
    """:func:`helpers.attacks.adaptive.robustness_study` of one model (a job of :func:`pgd_studies`)."""
    return robustness_study({name: model}, **kwargs)


def curve_table(flags: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]], *, names: Mapping[str, str], images: str,
                budgets: Sequence[float], n_resamples: int, seed: int) -> list[dict]:
    """``robustness.csv`` rows of every model (:func:`helpers.studies.adaptive_study.curve_rows`), in order."""
    return [row for spec, curves in flags.items() for row in curve_rows(model=spec, label=names[spec], images=images,
                                                                         budgets=budgets, curves=curves, n_resamples=n_resamples,
                                                                         seed=seed)]


@dataclass(frozen=True)
class TransferControls:
    """The transfer section's rows (``transfer_controls.csv``), its image sets and how many digits each holds."""

    rows: list[dict]
    kinds: list[str]
    n_transferred: int  # chapter 1's successful adversarial digits
    n_confident: int  # those the margin attack pushed past the margin


def transfer_controls(adversarial: Mapping[str, np.ndarray], *, source: keras.Model, others: Mapping[int, keras.Model],
                      models: StudyModels, margin: float, step: float, max_steps: int, seed: int) -> TransferControls:
    """Chapter 1's adversarial digits (``adversarial``: ``mnist_adversarial.npz``), at the boundary and pushed to a
    margin on ``source``, fed to every defended model and seed and to undefended ``others`` (other training seeds)."""
    ok = adversarial["success"]
    x0, y0, t0 = adversarial["images"][ok], adversarial["labels"][ok], adversarial["targets"][ok]
    confident, reached = (study.margin_attack(source, x0, t0, margin=margin, step=step, max_steps=max_steps) if len(x0)
                          else (x0, np.zeros(0, bool)))  # no successful attack in chapter 1: nothing to transfer
    image_sets = {"boundary (chapter 1)": (adversarial["adversarial"][ok], np.ones(len(x0), bool)),
                  f"high-confidence (κ = {margin:g})": (confident, reached)}
    receivers = [(models.names[s], "defended", k, m) for s in models.defended for k, m in models.by_seed[s].items()]
    receivers += [(models.names["none"], "control: another training seed", k, m) for k, m in others.items()]
    rows = transfer_control_rows(image_sets, images=x0, labels=y0, targets=t0, receivers=receivers, source=source,
                                 source_label=models.names["none"], seed=seed)
    return TransferControls(rows=rows, kinds=list(image_sets), n_transferred=int(ok.sum()), n_confident=int(reached.sum()))


def transfer_control_rows(
    image_sets: Mapping[str, tuple[np.ndarray, np.ndarray]], *, images: np.ndarray, labels: np.ndarray, targets: np.ndarray,
    receivers: Sequence[tuple[str, str, int, keras.Model]], source: keras.Model, source_label: str, seed: int,
) -> list[dict]:
    """Per image set and receiving model, the transferred digits' share still on target and share correct.

    Args:
        image_sets: per set name, (the adversarial digits made on ``source``, which of them the set keeps).
        images, labels, targets: the clean digits the adversarial ones were made from, their labels and targets.
        receivers: (name, role, seed, model) of each model the digits are fed to.
        source: the model they were made on; it receives, per set, the clean digits plus random noise of the same norms.
    """
    rows = []
    for kind, (made, keep) in image_sets.items():
        lab, tar, orig, moved = labels[keep], targets[keep], images[keep], made[keep]
        for receiver, role, k, m in receivers:
            rows.append({"images": kind, "receiver": receiver, "role": role, "seed": k, "n": int(keep.sum()),
                         **transfer_rates(m, lab, moved, tar)})
        noisy = noise_like(orig, moved, seed=seed) if len(orig) else moved
        rows.append({"images": kind, "receiver": source_label, "role": NOISE_CONTROL, "seed": seed, "n": int(keep.sum()),
                     **transfer_rates(source, lab, noisy, tar)})
    return rows


def paper_attack_rows(
    models: Mapping[str, keras.Model], *, defended: Sequence[str], names: Mapping[str, str], images: np.ndarray,
    labels: np.ndarray, n_images: int, seed: int, step: float, max_steps: int, n_bootstrap: int,
) -> list[dict]:
    """The paper's attack on every model (exact gradient, and BPDA on the defended ones), with the median ‖δ‖₂'s interval."""
    rows = []
    for spec, model in models.items():
        for gradient, attacked in [("exact", model)] + ([("BPDA", bpda_model(model))] if spec in defended else []):
            summary = attack_evaluation(attacked, images, labels, n_images=n_images, seed=seed, step=step,
                                        max_steps=max_steps, progress=False)
            ok_l2 = summary.result.l2[summary.result.success]
            lo, hi = bootstrap_ci(ok_l2, statistic=np.median, n_resamples=n_bootstrap, seed=seed)
            rows.append({"model": names[spec], "defence": spec, "gradient": gradient, **summary.row(), "median_l2_lo": lo,
                         "median_l2_hi": hi})
    return rows


def best_success(rows: Sequence[Mapping], names: Mapping[str, str]) -> dict[str, float]:
    """Per model name, the paper attack's best success rate over its gradients."""
    best: dict[str, float] = {}
    for r in rows:
        best[names[r["defence"]]] = max(best.get(names[r["defence"]], 0.0), float(r["success_rate"]))
    return best


def pgd_flags(studies: Mapping[int, RobustnessStudy], spec: str, *, seeds: Sequence[int]) -> dict[str, dict[int, np.ndarray]]:
    """Attack → seed → (budgets, images) flags of the PGD study for one model, with ``"worst"`` and ``"noise"``."""
    found = {a: {k: studies[k].attacks[spec][a].correct for k in seeds} for a in studies[seeds[0]].attacks[spec]}
    found["worst"] = {k: studies[k].worst(spec) for k in seeds}
    found["noise"] = {k: studies[k].noise[spec].correct for k in seeds}
    return found


def seed_mean(by_seed: Mapping[int, np.ndarray]) -> np.ndarray:
    """The robust-accuracy curve, mean over seeds, from per-seed (budgets, images) flags."""
    return np.mean([f.mean(axis=1) for f in by_seed.values()], axis=0)


def every_curve(flags: Mapping[str, Mapping[int, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every attack's curve per seed (``"attack, seed k"``), random noise left out."""
    return {f"{a}, seed {k}": f.mean(axis=1) for a, by in flags.items() if a != "noise" for k, f in by.items()}


def check_settings(settings: Mapping) -> dict:
    """The settings of chapter 6's gradient-free checks: the cascade's ``settings`` with ``settings["check_queries"]``
    queries (the cascade's when absent)."""
    return {**settings, "square_queries": settings.get("check_queries", settings["square_queries"])}


@dataclass(frozen=True)
class StrongStudy:
    """The strong attacks on every model and seed, as a cascade (:mod:`helpers.studies.cascade`) on every digit."""

    grid: np.ndarray  # ε = 0 and the strong budgets
    at: list[int]  # their positions in the PGD grid
    cascades: dict[str, dict[int, Cascade]]  # model → seed → what each attack broke first
    flags: dict[str, dict[str, dict[int, np.ndarray]]]  # model → "PGD worst", each attack, worst cases → seed → (budgets, images)
    square_alone: np.ndarray  # (B,) the undefended model (first seed) under the gradient-free attacks alone, every digit


def strong_study(models: StudyModels, digits: StudyDigits, *, pgd: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]],
                 budgets: Sequence[float], grid: np.ndarray, settings: Mapping, processes: int = 1) -> StrongStudy:
    """Every registered fixed-budget attack on every model and seed and every digit of ``digits.images``, each only on
    the (budget, digit) pairs PGD (``pgd``: :func:`pgd_flags` per model) and every earlier attack left correct; one
    job per model and seed in ``processes`` processes. Beside them, the first job: the gradient-free attacks alone on
    the undefended model's first seed with ``settings["check_queries"]`` queries (the cascade's when absent), what the
    check of their reach (:func:`chapter6_sanity`) compares; it is the longest job, so it starts first.

    ``settings``: ``steps``, ``restarts``, ``square_queries``, ``square_restarts`` and ``seed`` (the registry's).
    The flags of an attack are "correct after it and every attack before it" (the cascade's order)."""
    at = [int(np.flatnonzero(np.isclose(budgets, e))[0]) for e in grid]
    keys = [(spec, k) for spec, by in models.by_seed.items() for k in by]
    check = check_settings(settings)
    jobs = [models.job(square_alone, "none", next(iter(models.by_seed["none"])), images=digits.images, labels=digits.labels, budgets=grid, settings=check)]
    jobs += [models.job(cascade, spec, k, images=digits.images, labels=digits.labels, budgets=grid,
                        after_pgd=pgd[spec]["worst"][k][at], settings=settings) for spec, k in keys]
    alone, *results = run_jobs(jobs, processes=processes)
    found: dict[str, dict[int, Cascade]] = {spec: {} for spec in models.by_seed}
    for (spec, k), result in zip(keys, results, strict=True):
        found[spec][k] = result
    return StrongStudy(grid=grid, at=at, cascades=found, flags={spec: cascade_flags(by) for spec, by in found.items()},
                       square_alone=alone)


def chapter6_sanity(models: StudyModels, digits: StudyDigits, strong: StrongStudy, *, studies: Mapping[int, RobustnessStudy],
                    pgd: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]], paper_rows: Sequence[Mapping],
                    budgets: Sequence[float], settings: Mapping, n_images: int, processes: int = 1) -> list[dict]:
    """Chapter 6's sanity checks with their inputs: twice the effort on every seed and strong budget, the defended models
    on the undefended model's PGD digits, the count of zero input gradients (on the first digits, ``digits.xs``), and
    on the first seed the gradient-free attacks with ``settings["check_queries"]`` queries (the cascade's when absent):
    alone against the gradient attacks on every digit of the undefended model, and on every first digit the cascade
    left on each defended one (the first of these ran with the strong study: ``strong.square_alone``). The attacks run
    as jobs in ``processes`` processes, the longest first."""
    middle = float(strong.grid[1:][(len(strong.grid) - 2) // 2])
    seeds, names = list(next(iter(models.by_seed.values()))), models.names
    steps, restarts, seed = settings["steps"], settings["restarts"], settings["seed"]
    check = check_settings(settings)
    first = {s: f["worst"][seeds[0]][:, digits.sub] for s, f in strong.flags.items()}
    keys = [(s, k) for s, by in models.by_seed.items() for k in by]
    jobs = [models.job(square_left, s, seeds[0], images=digits.xs, labels=digits.ys, left=first[s], budgets=strong.grid, settings=check)
            for s in models.defended]
    jobs += [models.job(doubled_effort, s, k, found=strong.cascades[s][k], images=digits.images, labels=digits.labels, steps=steps,
                        restarts=restarts, seed=seed) for s, k in keys]
    found = run_jobs(jobs, processes=processes)
    left_by, runs = dict(zip(models.defended, found[: len(models.defended)], strict=True)), found[len(models.defended):]
    more_effort = {}
    for s in models.by_seed:
        mine = [r for (spec, _), r in zip(keys, runs, strict=True) if spec == s]
        more_effort[names[s]] = (np.mean([r[1] for r in mine], axis=0)[1:], np.mean([r[2] for r in mine], axis=0)[1:])
    reach = {names["none"]: (strong.flags["none"]["gradient worst"][seeds[0]].mean(axis=1)[1:], strong.square_alone[1:])}
    masking = {names[s]: (first[s].mean(axis=1)[1:], left_by[s][1:]) for s in models.defended}
    transferred = {s: np.mean([study.transfer_accuracy(models.by_seed[s][k], studies[k].attacks["none"]["exact"].adversarial[strong.at],
                                                       digits.labels, strong.flags[s]["worst"][k][0]) for k in seeds], axis=0)
                   for s in models.defended}
    zero = {names[s]: study.zero_gradient_count(m, digits.xs, digits.ys, radius=middle, seed=seed) for s, m in models.models.items()}
    return chapter6_checks(budgets=budgets, names=names, defended=models.defended, paper_rows=paper_rows, pgd=pgd,
                           strong_flags=strong.flags, more_effort=more_effort, square_reach=reach, square_masking=masking,
                           transferred=transferred, zero_gradients=zero, n_images=n_images, n_strong=len(digits.images),
                           n_first=len(digits.xs))


def square_alone(model: keras.Model, images: np.ndarray, labels: np.ndarray, *, budgets: Sequence[float], settings: Mapping
                 ) -> np.ndarray:
    """(B,) robust accuracy of ``model`` under the registered gradient-free attacks alone, on every digit and budget
    (``budgets`` starts at ε = 0): how close an attack that never reads a gradient gets to the gradient attacks."""
    return square_alone_flags(model, images, labels, budgets=budgets, settings=settings).mean(axis=1)


def square_alone_flags(model: keras.Model, images: np.ndarray, labels: np.ndarray, *, budgets: Sequence[float],
                       settings: Mapping) -> np.ndarray:
    """(B, N) flags: correct under every registered gradient-free attack."""
    correct = None
    for spec in attacks_of("fixed_budget"):
        if spec.gradient_free:
            found = spec.run(model, images, labels, budgets=budgets, settings=settings).correct
            correct = found if correct is None else correct & found
    if correct is None:
        raise ValueError("no gradient-free fixed-budget attack is registered")
    return correct


def square_left(model: keras.Model, images: np.ndarray, labels: np.ndarray, left: np.ndarray, *, budgets: Sequence[float],
                settings: Mapping) -> np.ndarray:
    """(B,) accuracy once the registered gradient-free attacks have also run on every (budget, digit) pair of ``left``
    ((B, N) flags, correct after the gradient attacks; ``budgets`` starts at ε = 0)."""
    left = np.asarray(left, dtype=bool).copy()
    for b in np.flatnonzero(np.asarray(budgets) > 0):
        pick = np.flatnonzero(left[b])
        if len(pick):
            left[b, pick] &= square_alone_flags(model, images[pick], labels[pick], budgets=[budgets[b]], settings=settings)[-1]
    return left.mean(axis=1)


def chapter6_images(fits: Mapping[tuple[str, int], Any], digits: StudyDigits, strong: StrongStudy, *,
                    pgd: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]], budgets: Sequence[float]) -> list[dict]:
    """Every row of ``robustness_images.csv`` (:func:`chapter6_image_rows` of every model and seed, in order)."""
    return [row for spec, by in strong.flags.items() for k in by["worst"] for row in chapter6_image_rows(
        model=spec, seed=k, model_file=relative(fits[spec, k].path), pick=digits.pick, labels=digits.labels, budgets=budgets,
        pgd_worst=pgd[spec]["worst"][k], strong_budgets=strong.grid, strong_worst=by["worst"][k])]


def chapter6_image_rows(
    *, model: str, seed: int, model_file: str, pick: np.ndarray, labels: np.ndarray, budgets: Sequence[float],
    pgd_worst: np.ndarray, strong_budgets: Sequence[float], strong_worst: np.ndarray,
) -> list[dict]:
    """One model's rows of ``robustness_images.csv``: the clean digits (ε = 0, ``"clean"``), PGD's worst case and the
    strongest worst case on every digit. ``pgd_worst`` starts at ε = 0."""
    common = dict(model=model, seed=seed, model_file=model_file)
    clean = [{**common, "test_index": int(index), "label": int(labels[i]), "budget": 0.0, "evaluation": "clean",
              "broken": not bool(pgd_worst[0, i])} for i, index in enumerate(pick)]  # ε = 0: the clean digit
    return (clean + robustness_image_rows(**common, labels=labels, test_index=pick, budgets=budgets, correct=pgd_worst,
                                          evaluation="PGD worst case")
            + robustness_image_rows(**common, labels=labels, test_index=pick, budgets=strong_budgets,
                                    correct=strong_worst, evaluation="strongest worst case"))


def chapter6_checks(
    *, budgets: Sequence[float], names: Mapping[str, str], defended: Sequence[str], paper_rows: Sequence[Mapping],
    pgd: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]], strong_flags: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]],
    more_effort: Mapping[str, tuple[np.ndarray, np.ndarray]], square_reach: Mapping[str, tuple[np.ndarray, np.ndarray]],
    transferred: Mapping[str, np.ndarray], zero_gradients: Mapping[str, tuple[int, int]], n_images: int, n_strong: int,
    square_masking: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None, n_first: int | None = None,
) -> list[dict]:
    """Chapter 6's sanity checks (:func:`helpers.studies.sanity.sanity_checks`) from its PGD and strong-attack flags.

    Args:
        pgd, strong_flags: per model (in the order of the checks), attack → seed → (budgets, images) flags.
        transferred: per defended model, its accuracy on the undefended model's PGD digits (mean over seeds).
        square_masking, n_first: the stronger gradient-free attack on the first digits (``n_first`` of them) of the
            first seed, per defended model (see :func:`helpers.studies.sanity.sanity_checks`).
    """
    return sanity_checks(
        budgets=budgets, unbounded_success=best_success(paper_rows, names),
        curves={names[s]: every_curve({**pgd[s], **strong_flags[s]}) for s in pgd},
        worst={names[s]: seed_mean(pgd[s]["worst"]) for s in pgd}, noise={names[s]: seed_mean(pgd[s]["noise"]) for s in pgd},
        more_effort=more_effort, square_reach=square_reach, transfer={names[s]: (seed_mean(strong_flags[s]["worst"]), transferred[s]) for s in defended},
        zero_gradients=zero_gradients, n_images=n_images, n_strong=n_strong, square_masking=square_masking, n_first=n_first)


def pooled(rows: Sequence[Mapping], *, seeds: Sequence[int]) -> pd.DataFrame:
    """The rows of :func:`curve_table` pooled over the training seeds (the first seed's when there is one)."""
    frame = pd.DataFrame(rows)
    return frame[frame["seed"] == ("all" if len(seeds) > 1 else str(seeds[0]))]


@dataclass(frozen=True)
class C6Claim:
    """C6 as chapter 6 decides it: the robust shares and gains it compares, and the verdict."""

    statistic: str
    shares: dict[str, np.ndarray]
    gains: dict
    verdict: dict
    design: C6Design


def c6_claim(models: StudyModels, strong: StrongStudy, *, checks: Sequence[Mapping], gradient_free_wins: Sequence[str],
             n_resamples: int, seed: int) -> C6Claim:
    """C6 (:func:`helpers.studies.verdicts.adaptive_verdict`) from the strongest worst case on every digit, every model and
    seed, with the design's smallest detectable gain (:func:`helpers.studies.shares.c6_design`) in its evidence."""
    seeds, names = list(next(iter(models.by_seed.values()))), models.names
    n_digits = next(iter(strong.flags["none"]["worst"].values())).shape[1]
    shares = {names[s]: robust_shares(np.stack([f["worst"][k] for k in seeds]), budgets=strong.grid) for s, f in strong.flags.items()}
    statistic = share_statistic(strong.grid)
    design = c6_design(n_digits=n_digits, n_seeds=len(seeds), n_models=PLANNED_MODELS)  # as planned, before the models were known

    def decided(bootstrap_seed: int) -> tuple[dict, dict]:
        gains = study.paired_gains(shares, reference=names["none"], n_resamples=n_resamples, seed=bootstrap_seed)
        return gains, adaptive_verdict(gains, statistic=statistic, failed_checks=failed_checks(checks), n_checks=len(checks),
                                       evaluation=evaluation_text(n_digits=n_digits, n_seeds=len(seeds)),
                                       gradient_free_wins=gradient_free_wins, weak_checks=failed_positive_only(checks),
                                       design=design.sentence())

    gains, verdict = decided(seed)
    verdict = with_stability(verdict, [decided(other_bootstrap_seed(seed, i))[1]["verdict"] for i in range(BOOTSTRAP_SEEDS)])
    return C6Claim(statistic=statistic, shares=shares, gains=gains, verdict=verdict, design=design)


def design_record(design: C6Design, *, measured: Mapping[str, C6Design] | None = None) -> dict:
    """C6's design as ``adaptive_claims.json`` records it: the plan, and per defended model the standard error and
    smallest detectable gain measured on the run's data (:func:`helpers.studies.shares.measured_design`)."""
    return {"digits": design.n_digits, "seeds": design.n_seeds, "models": design.n_models,
            "standard_error": design.standard_error, "detectable": design.detectable,
            "measured": {label: {"standard_error": d.standard_error, "detectable": d.detectable}
                         for label, d in (measured or {}).items()}}
