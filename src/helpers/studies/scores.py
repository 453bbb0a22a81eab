"""Chapter 5's measurement: every training seed's model attacked on the same test images, three ways.

For each defended model and each training seed we attack the *same* test images (correctly classified by every
model, each with a seeded random target), so that every comparison is paired:

* ``paper`` — the paper's attack with the exact gradient (through the filter), stopping at the target;
* ``paper_bpda`` — the same attack with BPDA (the filter's backward pass replaced by the identity);
* ``minimum_norm`` — DDN (:mod:`helpers.attacks.minnorm`), an attack built to minimise ‖δ‖₂;
* and, apart from these, the paper's other possible reading: if its blur ran outside the graph, its attacker
  perturbed the *already filtered* image of the network behind the filter (``filtered_input``).

The *paper's measure* of a model is the paper's attack's mean ‖δ‖₂ over its successes; the *strongest measure*
is the mean of the per-image minimum over the three attacks (what any of them could find). The paper's score
is accuracy × ‖δ‖₂; intervals come from a bootstrap over training seeds *and* images (:mod:`helpers.core.stats`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from helpers.attacks import registry
from helpers.attacks.adaptive import bpda_model
from helpers.attacks.attack import targeted_attack
from helpers.core.stats import image_counts, interval, over_picked_seeds, per_seed_means, seed_picks
from helpers.core.validate import check_int
from helpers.defences.filters import Defence, filter_layers, model_defence
from helpers.studies.evaluate import predict_logits, random_targets

STRONGEST_LABEL = "strongest: per-image minimum"


def attack_names() -> tuple[str, ...]:
    """Chapter 5's attacks: every registered minimum-norm attack, in registration order (the table's order)."""
    return registry.attack_names("minimum_norm")


def measures() -> dict[str, tuple[str, ...]]:
    """The paper's measure (its own attack's distance) and the strongest (the per-image minimum over every attack)."""
    return {"paper": ("paper",), "strongest": attack_names()}


def attack_labels() -> dict[str, str]:
    """Each attack's label in tables and figures, and the strongest measure's."""
    return {s.name: s.label for s in registry.attacks_of("minimum_norm")} | {"strongest": STRONGEST_LABEL}


def __getattr__(name: str):
    """``ATTACKS``, ``MEASURES`` and ``ATTACK_LABELS`` as the chapter reads them, from the registry at each use."""
    readers = {"ATTACKS": attack_names, "MEASURES": measures, "ATTACK_LABELS": attack_labels}
    if name in readers:
        return readers[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class ModelDistances:
    """One trained model: its correct test images and the distance each attack needed (NaN: it failed)."""

    defence: str
    seed: int
    model_file: str
    correct: np.ndarray  # (N_test,) bool
    l2: dict[str, np.ndarray]  # attack → (M,) float64, NaN where the attack failed

    def measure(self, name: str) -> np.ndarray:
        """Per image: the paper's attack's distance, or the minimum over every attack (``"strongest"``)."""
        stack = np.stack([self.l2[a] for a in measures()[name]])
        with np.errstate(all="ignore"):
            return np.where(np.isfinite(stack).any(axis=0), np.nanmin(np.where(np.isfinite(stack), stack, np.inf), axis=0), np.nan)


@dataclass
class DistanceStudy:
    """Every (defence, seed) model on the same attacked images (see the module docstring)."""

    indices: np.ndarray  # (M,) test-image indices attacked
    labels: np.ndarray  # (M,)
    targets: np.ndarray  # (M,)
    models: dict[tuple[str, int], ModelDistances] = field(default_factory=dict)

    @property
    def defences(self) -> list[str]:
        return list(dict.fromkeys(d for d, _ in self.models))

    def seeds(self, defence: str) -> list[int]:
        return [s for d, s in self.models if d == defence]

    def stacked(self, defence: str, what: str) -> np.ndarray:
        """(seeds, images): ``"correct"`` flags on the test set, or a measure's distances on the attacked images."""
        rows = [self.models[(defence, s)] for s in self.seeds(defence)]
        return np.stack([r.correct if what == "correct" else r.measure(what) for r in rows]).astype(np.float64)


def paired_images(correct: Sequence[np.ndarray], labels: np.ndarray, *, n_images: int, num_classes: int, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n_images`` test images that every model classifies correctly (seeded choice, test-set order), each
    with a seeded random wrong target. Returns (indices, targets)."""
    n_images = check_int("n_images", n_images, minimum=1)
    everywhere = np.logical_and.reduce([np.asarray(c, dtype=bool) for c in correct])
    if not everywhere.any():  # models near chance (tiny data): attack the same images anyway, still paired
        everywhere = np.ones_like(everywhere)
    indices = np.sort(np.random.default_rng(seed).permutation(np.flatnonzero(everywhere))[:n_images])
    return indices, random_targets(labels[indices], num_classes=num_classes, seed=seed)


def attack_distances(model: keras.Model, images: np.ndarray, labels: np.ndarray, targets: np.ndarray, *, step: float,
                     max_steps: int, minnorm_steps: int) -> dict[str, np.ndarray]:
    """‖δ‖₂ per image of every registered minimum-norm attack (NaN where one failed), then the other reading
    (``filtered_input``); without a filter a BPDA attack is its exact-gradient twin's distances."""
    def distances(result) -> np.ndarray:
        return np.where(result.success, result.l2, np.nan)

    settings = {"step": step, "max_steps": max_steps, "minnorm_steps": minnorm_steps}
    layers = filter_layers(model)
    out: dict[str, np.ndarray] = {}
    for spec in registry.attacks_of("minimum_norm"):
        twin = registry.exact_twin(spec)
        if spec.gradient == "BPDA" and not layers and twin in out:
            out[spec.name] = out[twin].copy()
            continue
        view = bpda_model(model) if spec.gradient == "BPDA" and layers else model
        out[spec.name] = distances(spec.run(view, images, labels, targets, settings=settings))
    out["filtered_input"] = out["paper"].copy()
    if layers:  # the network behind the filter, attacked on the filtered image
        body = keras.Model(layers[0].output, model.output)
        filtered = np.clip(model_defence(model).apply(images), 0.0, 1.0)
        out["filtered_input"] = distances(targeted_attack(body, filtered, targets, step=step, max_steps=max_steps,
                                                          progress=False))
    return out


def distance_study(models: Mapping[tuple[str, int], tuple[keras.Model, str]], x_test: np.ndarray, y_test: np.ndarray, *,
                   n_images: int, step: float, max_steps: int, minnorm_steps: int, seed: int = 0) -> DistanceStudy:
    """Attack every (defence, seed) model of ``models`` (→ (model, model file name)) on the same test images."""
    if not models:
        raise ValueError("models: expected at least one (defence, seed) → (model, file) entry")
    correct = {key: predict_logits(m, x_test).argmax(axis=1) == y_test for key, (m, _) in models.items()}
    num_classes = int(next(iter(models.values()))[0].output_shape[-1])
    indices, targets = paired_images(list(correct.values()), y_test, n_images=n_images, num_classes=num_classes, seed=seed)
    study = DistanceStudy(indices=indices, labels=y_test[indices], targets=targets)
    for (defence, train_seed), (model, path) in models.items():
        l2 = attack_distances(model, x_test[indices], y_test[indices], targets, step=step, max_steps=max_steps,
                              minnorm_steps=minnorm_steps)
        study.models[(str(Defence.parse(defence)), train_seed)] = ModelDistances(str(defence), train_seed, path,
                                                                               correct[(defence, train_seed)], l2)
    return study


def clean_image_rows(study: DistanceStudy, labels: np.ndarray) -> list[dict]:
    """``clean_images.csv``: per model file and test digit, whether the model classifies it correctly (the accuracy
    behind C3 and C4, and chapter 5's clean accuracy)."""
    return [{"defence": d, "seed": s, "model_file": m.model_file, "test_index": i, "label": int(labels[i]), "correct": bool(c)}
            for (d, s), m in study.models.items() for i, c in enumerate(m.correct)]


def min_norm_image_rows(study: DistanceStudy) -> list[dict]:
    """The per-image file: one row per model and attacked image, with every attack's ‖δ‖₂ (empty: it failed)."""
    rows = []
    for (defence, seed), record in study.models.items():
        strongest = record.measure("strongest")
        for k, index in enumerate(study.indices):
            rows.append({"defence": defence, "seed": seed, "model_file": record.model_file, "test_index": int(index),
                         "label": int(study.labels[k]), "target": int(study.targets[k]),
                         **{f"l2_{a}": record.l2[a][k] for a in attack_names()}, "l2_strongest": strongest[k]})
    return rows


@dataclass
class Draws:
    """Bootstrap draws (over seeds and images) of one model's accuracy and, per measure, mean ‖δ‖₂ and score."""

    accuracy: np.ndarray
    mean_l2: dict[str, np.ndarray]
    score: dict[str, np.ndarray]


def bootstrap(study: DistanceStudy, *, n_resamples: int = 1000, seed: int = 0) -> dict[str, Draws]:
    """Draws for every defence; the image draws are shared (paired), the seed draws independent per model."""
    any_defence = study.defences[0]
    test_counts = image_counts(study.stacked(any_defence, "correct").shape[1], n_resamples=n_resamples, seed=seed)
    attack_counts = image_counts(len(study.indices), n_resamples=n_resamples, seed=seed + 1)
    draws = {}
    for k, defence in enumerate(study.defences):
        picks = seed_picks(len(study.seeds(defence)), n_resamples=n_resamples, seed=seed + 2 + k)
        accuracy = per_seed_means(study.stacked(defence, "correct"), test_counts)
        mean_l2, score = {}, {}
        for measure in measures():
            l2 = per_seed_means(study.stacked(defence, measure), attack_counts)
            mean_l2[measure] = over_picked_seeds(l2, picks)
            score[measure] = over_picked_seeds(accuracy * l2, picks)
        draws[defence] = Draws(over_picked_seeds(accuracy, picks), mean_l2, score)
    return draws


def point(study: DistanceStudy, defence: str, what: str, *, measure: str = "paper") -> float:
    """The point estimate: mean over seeds of accuracy, mean ‖δ‖₂ (``what="mean_l2"``) or score."""
    accuracy = study.stacked(defence, "correct").mean(axis=1)
    with np.errstate(all="ignore"):
        l2 = np.nanmean(study.stacked(defence, measure), axis=1)
    return float(np.mean({"accuracy": accuracy, "mean_l2": l2, "score": accuracy * l2}[what]))


def score_rows(study: DistanceStudy, draws: Mapping[str, Draws], *, level: float = 0.95) -> list[dict]:
    """Chapter 5's table: one row per defence, the paper's measure and the strongest one side by side."""
    rows = []
    for defence in study.defences:
        d = Defence.parse(defence)
        row = {"defence": defence, "label": d.label, "kind": d.kind, "parameter": d.parameter,
               "n_seeds": len(study.seeds(defence)), "n_images": len(study.indices),
               "clean_accuracy": point(study, defence, "accuracy")}
        row["accuracy_lo"], row["accuracy_hi"] = interval(draws[defence].accuracy, level=level)
        with np.errstate(all="ignore"):
            other = [np.nanmean(study.models[(defence, s)].l2["filtered_input"]) for s in study.seeds(defence)]
        row["other_reading_mean_l2"] = float(np.mean(other))
        for measure, prefix in (("paper", ""), ("strongest", "strongest_")):
            stacked = study.stacked(defence, measure)
            row[f"{prefix}success_rate"] = float(np.isfinite(stacked).mean())
            row[f"{prefix}mean_l2"] = point(study, defence, "mean_l2", measure=measure)
            row[f"{prefix}mean_l2_lo"], row[f"{prefix}mean_l2_hi"] = interval(draws[defence].mean_l2[measure], level=level)
            row[f"{prefix}score"] = point(study, defence, "score", measure=measure)
            row[f"{prefix}score_lo"], row[f"{prefix}score_hi"] = interval(draws[defence].score[measure], level=level)
        rows.append(row)
    return rows


def min_norm_rows(study: DistanceStudy, *, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """Per defence and attack (each of :func:`attack_names` and the strongest): median and mean ‖δ‖₂ with intervals
    (bootstrap over seeds and images), success rate, images and seeds."""
    rows = []
    counts = image_counts(len(study.indices), n_resamples=n_resamples, seed=seed + 1)
    rng = np.random.default_rng(seed)
    for defence in study.defences:
        records = [study.models[(defence, s)] for s in study.seeds(defence)]
        picks = rng.integers(0, len(records), size=(n_resamples, len(records)))
        for attack in (*attack_names(), "strongest"):
            values = np.stack([r.measure("strongest") if attack == "strongest" else r.l2[attack] for r in records])
            mean_draws = over_picked_seeds(per_seed_means(values, counts), picks)
            medians = [_median(values[picks[r]], counts[r]) for r in range(n_resamples)]
            with np.errstate(all="ignore"):
                row = {"defence": defence, "label": Defence.parse(defence).label, "attack": attack,
                       "median_l2": float(np.nanmedian(values)), "mean_l2": float(np.nanmean(values))}
            row["median_lo"], row["median_hi"] = interval(np.array(medians), level=level)
            row["mean_lo"], row["mean_hi"] = interval(mean_draws, level=level)
            row |= {"success_rate": float(np.isfinite(values).mean()), "n_images": values.shape[1], "n_seeds": len(records)}
            rows.append(row)
    return rows


def _median(values: np.ndarray, counts: np.ndarray) -> float:
    """Median of the finite values of the picked seeds' rows, each image repeated as often as it was drawn."""
    repeated = np.repeat(values, counts.astype(int), axis=1)
    finite = repeated[np.isfinite(repeated)]
    return float(np.median(finite)) if len(finite) else float("nan")


# --------------------------------------------------------------------------------------------------------------
# Choices on the validation split, verdicts on the test images
# --------------------------------------------------------------------------------------------------------------


def validation_rows(models: Mapping[str, Sequence[keras.Model]], x_val: np.ndarray, y_val: np.ndarray, *, n_images: int,
                    step: float, max_steps: int, seed: int = 0) -> list[dict]:
    """Per defence: accuracy on the validation images (mean over its seeds' models), the paper's attack on up to
    ``n_images`` of them (first seed's model) and the paper's score — what every choice of a filter is based on."""
    from helpers.studies.evaluate import attack_set, clean_accuracy

    if not len(y_val):
        raise ValueError("x_val: the data set holds no validation images; load it with validation_fraction > 0")
    rows = []
    for defence, seed_models in models.items():
        d = Defence.parse(defence)
        accuracy = float(np.mean([clean_accuracy(m, x_val, y_val) for m in seed_models]))
        try:
            indices, targets = attack_set(seed_models[0], x_val, y_val, n_images=n_images, seed=seed)
        except ValueError:  # the model classifies no validation image correctly: nothing to attack, no score
            indices, targets = np.zeros(0, int), np.zeros(0, int)
        result = (targeted_attack(seed_models[0], x_val[indices], targets, step=step, max_steps=max_steps, progress=False)
                  if len(indices) else None)
        mean_l2 = float(result.l2[result.success].mean()) if result is not None and result.success.any() else float("nan")
        rows.append({"defence": str(d), "label": d.label, "kind": d.kind, "val_accuracy": accuracy, "val_mean_l2": mean_l2,
                     "val_score": accuracy * mean_l2, "val_n_images": len(indices)})
    return rows


def estimate(study: DistanceStudy, draws: Mapping[str, Draws], a: str, b: str, *, what: str, measure: str = "paper"):
    """``a`` against ``b``: the accuracy difference (``what="accuracy"``), or the relative gain in mean ‖δ‖₂ or in
    the score (``a / b − 1``), with its bootstrap interval (images paired, seeds drawn per model)."""
    from helpers.studies.verdicts import Estimate

    if what == "accuracy":
        effect = point(study, a, "accuracy") - point(study, b, "accuracy")
        samples = draws[a].accuracy - draws[b].accuracy
    else:
        pick = {"mean_l2": lambda d: d.mean_l2[measure], "score": lambda d: d.score[measure]}[what]
        effect = point(study, a, what, measure=measure) / point(study, b, what, measure=measure) - 1
        with np.errstate(all="ignore"):
            samples = pick(draws[a]) / pick(draws[b]) - 1
    return Estimate(effect, *interval(samples))


def paper_claims(study: DistanceStudy, draws: Mapping[str, Draws], choices: Mapping[str, str | None]) -> list[dict]:
    """C3–C5 on each measure, from the choices made on the validation split (``best_gaussian``, the most accurate
    ``accurate_gaussian`` and ``accurate_median``, ``rival``: the best filter other than σ = 1.5)."""
    from helpers.studies import verdicts
    rows = []
    n = {"n_images": len(study.indices), "n_seeds": min(len(study.seeds(d)) for d in study.defences)}
    for measure in measures():
        gauss = choices.get("best_gaussian")
        if gauss:
            acc, gain = (estimate(study, draws, gauss, "none", what="accuracy"),
                         estimate(study, draws, gauss, "none", what="mean_l2", measure=measure))
            verdict, rule, shown = verdicts.keeps_accuracy_and_enlarges_verdict(acc, gain)
            rows.append({"claim": "C3", "measure": measure, "verdict": verdict, "effect": gain.effect, "low": gain.low,
                         "high": gain.high, **n, "rule": rule, "proves": shown, "evidence": (
                             f"{Defence.parse(gauss).label} (best Gaussian on validation) against no filter: accuracy "
                             f"{acc.text()}, mean ‖δ‖₂ {gain.text()}")})
        pair = choices.get("accurate_gaussian"), choices.get("accurate_median")
        if all(pair) and measure == "paper":  # C4 is about accuracy alone: one row
            gain = estimate(study, draws, pair[0], pair[1], what="accuracy")
            verdict, rule, shown = verdicts.more_accurate_verdict(gain)
            rows.append({"claim": "C4", "measure": "accuracy", "verdict": verdict, "effect": gain.effect, "low": gain.low,
                         "high": gain.high, **n, "rule": rule, "proves": shown, "evidence": (
                             f"most accurate on validation: {Defence.parse(pair[0]).label} against "
                             f"{Defence.parse(pair[1]).label}; test accuracy difference {gain.text()}")})
        rival = choices.get("rival")
        if rival and "gaussian:1.5" in study.defences:
            gain = estimate(study, draws, "gaussian:1.5", rival, what="score", measure=measure)
            verdict, rule, shown = verdicts.best_filter_verdict(gain)
            rows.append({"claim": "C5", "measure": measure, "verdict": verdict, "effect": gain.effect, "low": gain.low,
                         "high": gain.high, **n, "rule": rule, "proves": shown, "evidence": (
                             f"score of Gaussian σ=1.5 against {Defence.parse(rival).label} (best other filter on "
                             f"validation): {gain.text()}")})
    return rows


def stable_paper_claims(study: DistanceStudy, draws: Mapping[str, Draws], choices: Mapping[str, str | None], *,
                        n_resamples: int, seed: int) -> list[dict]:
    """:func:`paper_claims` from ``draws`` (:func:`bootstrap` with ``seed``), each verdict checked against the same
    claims under :data:`helpers.studies.intervals.BOOTSTRAP_SEEDS` other bootstrap seeds
    (:func:`helpers.studies.intervals.with_stability`)."""
    from helpers.studies.intervals import BOOTSTRAP_SEEDS, other_bootstrap_seed, with_stability

    claims = paper_claims(study, draws, choices)
    again = [paper_claims(study, bootstrap(study, n_resamples=n_resamples, seed=other_bootstrap_seed(seed, i)), choices)
             for i in range(BOOTSTRAP_SEEDS)]
    return [with_stability(row, [other[j]["verdict"] for other in again]) for j, row in enumerate(claims)]


def validation_choices(rows: Sequence[Mapping]) -> dict[str, str | None]:
    """What the validation split picks: the best filter by score overall (``best_defence``) and per kind
    (``best_<kind>``), the most accurate per kind (``accurate_<kind>``), and the best filter other than σ = 1.5."""
    from helpers.defences.filters import FILTER_KINDS
    from helpers.studies.verdicts import best_by_kind

    scored = [dict(r, score=r["val_score"], clean_accuracy=r["val_accuracy"]) for r in rows]
    choices = best_by_kind(scored, column="score")
    for kind in FILTER_KINDS:
        accurate = best_by_kind([r for r in scored if r["kind"] == kind], column="clean_accuracy")
        choices[f"accurate_{kind}"] = accurate[f"best_{kind}"]
    others = [r for r in scored if r["defence"] not in ("gaussian:1.5", "none")]
    choices["rival"] = best_by_kind(others, column="score")["best_defence"] if others else None
    return choices


# --------------------------------------------------------------------------------------------------------------
# Does the best σ move with the image's resolution?
# --------------------------------------------------------------------------------------------------------------


def resolution_rows(dataset: str, *, factor: int, sigmas: Sequence[float], arch: str, n_images: int, epochs: int,
                    batch_size: int, n_attack: int, step: float, max_steps: int, seed: int = 0,
                    validation_fraction: float = 0.0) -> list[dict]:
    """The Gaussian study on the same images upsampled ``factor`` times (one seed): per σ (in the upsampled
    image's pixels), the clean accuracy, the paper's attack on ``n_attack`` test images, and the paper's score.
    ``relative_sigma`` is σ / factor, the σ that blurs the original-size image as much."""
    from helpers.defences.filters import study_grid
    from helpers.studies.evaluate import attack_evaluation, clean_accuracy
    from helpers.training.data import load_dataset
    from helpers.training.train import train_model

    factor = check_int("factor", factor, minimum=1, maximum=16)
    native = load_dataset(dataset, n_images=n_images, seed=seed).input_shape[0]
    data = load_dataset(dataset, image_size=native * factor, n_images=n_images, seed=seed, validation_fraction=validation_fraction)
    rows = []
    for defence in study_grid({"gaussian": sigmas}):
        model = train_model(arch, data, defence=defence, epochs=epochs, batch_size=batch_size, seed=seed, verbose=0)
        accuracy = clean_accuracy(model, data.x_test, data.y_test)
        summary = attack_evaluation(model, data.x_test, data.y_test, n_images=n_attack, seed=seed, step=step,
                                    max_steps=max_steps, progress=False)
        rows.append({"resolution": native * factor, "sigma": defence.parameter, "relative_sigma": defence.parameter / factor,
                     "clean_accuracy": accuracy, "success_rate": summary.success_rate, "mean_l2": summary.mean_l2,
                     "score": accuracy * summary.mean_l2, "n_images": summary.n_attacked})
    return rows
