"""Chapter 6's long loops, as functions: the transfer controls, the paper's attack on every model, the PGD flags per
attack and seed, the per-seed means the sanity checks read, and the per-image rows of ``robustness_images.csv``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from helpers.attacks.adaptive import RobustnessStudy, bpda_model, transfer_rates
from helpers.core.stats import bootstrap_ci
from helpers.defences.filters import Defence
from helpers.studies.adaptive_study import curve_rows, noise_like, robustness_image_rows
from helpers.studies.evaluate import attack_evaluation
from helpers.studies.sanity import sanity_checks

NOISE_CONTROL = "control: + random noise of the same ‖δ‖₂"


@dataclass(frozen=True)
class StudyModels:
    """Chapter 6's models: per defence and seed, the first seed's, their labels and the defended ones."""

    by_seed: dict[str, dict[int, keras.Model]]
    models: dict[str, keras.Model]  # the first seed's, for the single-model sections
    names: dict[str, str]
    defended: list[str]


def study_models(fits: Mapping[tuple[str, int], Any], *, roles: Sequence[str], seeds: Sequence[int]) -> StudyModels:
    """Group the trained models (``fits``: (defence, seed) → an object with ``.model``) by defence and seed."""
    by_seed = {spec: {k: fits[spec, k].model for k in seeds} for spec in roles}
    return StudyModels(by_seed=by_seed, models={spec: by_seed[spec][seeds[0]] for spec in roles},
                       names={spec: Defence.parse(spec).label for spec in roles}, defended=[s for s in roles if s != "none"])


def curve_table(flags: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]], *, names: Mapping[str, str], images: str,
                budgets: Sequence[float], n_resamples: int, seed: int) -> list[dict]:
    """``robustness.csv`` rows of every model (:func:`helpers.studies.adaptive_study.curve_rows`), in order."""
    return [row for spec, curves in flags.items() for row in curve_rows(model=spec, label=names[spec], images=images,
                                                                         budgets=budgets, curves=curves, n_resamples=n_resamples,
                                                                         seed=seed)]


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


def chapter6_image_rows(
    *, model: str, seed: int, model_file: str, pick: np.ndarray, labels: np.ndarray, budgets: Sequence[float],
    pgd_worst: np.ndarray, sub: slice, strong_budgets: Sequence[float], strong_worst: np.ndarray,
) -> list[dict]:
    """One model's rows of ``robustness_images.csv``: PGD's worst case on every digit, the strongest on the subset."""
    common = dict(model=model, seed=seed, model_file=model_file)
    return (robustness_image_rows(**common, labels=labels, test_index=pick, budgets=budgets, correct=pgd_worst,
                                  evaluation="PGD worst case")
            + robustness_image_rows(**common, labels=labels[sub], test_index=pick[sub], budgets=strong_budgets,
                                    correct=strong_worst, evaluation="strongest worst case"))


def chapter6_checks(
    *, budgets: Sequence[float], names: Mapping[str, str], defended: Sequence[str], paper_rows: Sequence[Mapping],
    pgd: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]], strong_flags: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]],
    more_effort: Mapping[str, tuple[np.ndarray, np.ndarray]], transferred: Mapping[str, np.ndarray],
    zero_gradients: Mapping[str, tuple[int, int]], n_images: int, n_strong: int,
) -> list[dict]:
    """Chapter 6's sanity checks (:func:`helpers.studies.sanity.sanity_checks`) from its PGD and strong-attack flags.

    Args:
        pgd, strong_flags: per model (in the order of the checks), attack → seed → (budgets, images) flags.
        transferred: per defended model, its accuracy on the undefended model's PGD digits (mean over seeds).
    """
    return sanity_checks(
        budgets=budgets, unbounded_success=best_success(paper_rows, names),
        curves={names[s]: every_curve({**pgd[s], **strong_flags[s]}) for s in pgd},
        worst={names[s]: seed_mean(pgd[s]["worst"]) for s in pgd}, noise={names[s]: seed_mean(pgd[s]["noise"]) for s in pgd},
        more_effort=more_effort, transfer={names[s]: (seed_mean(strong_flags[s]["worst"]), transferred[s]) for s in defended},
        zero_gradients=zero_gradients, n_images=n_images, n_strong=n_strong)
