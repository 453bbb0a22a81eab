"""Chapter 6's adaptive evaluation over training seeds: the fixed
summary statistic with its paired bootstrap and Holm correction, and the inputs of the transfer controls.

* :func:`robust_share` — the statistic fixed before the data: per image, the share of the budgets
  0 < ε ≤ ε_max at which it stays correct (the normalised area under its robust-accuracy curve on that grid).
* :func:`paired_gains` — defended minus undefended, intervals by a bootstrap over training seeds (drawn per
  model) and images (the same draws for every model), one-sided p-values and Holm's correction.
* :func:`margin_attack` and :func:`noise_like` — the high-confidence and random-noise controls of the
  oblivious transfer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from helpers.attacks.adaptive import bpda_model, has_defence, noise_of_norm
from helpers.attacks.attack import loss_and_gradient
from helpers.core.contract import l2_norms, safe_norms
from helpers.core.engine import check_classifier, check_model_images, compiled, loop_body, predict_logits
from helpers.core.stats import (
    accuracy_curve_ci,
    image_counts,
    interval,
    over_picked_seeds,
    p_value_mc_error,
    per_seed_means,
    quantile_mc_error,
    seed_picks,
)
from helpers.core.validate import check_float, check_int, check_labels


def transfer_accuracy(model: keras.Model, adversarial: np.ndarray, labels: np.ndarray, clean_correct: np.ndarray) -> np.ndarray:
    """(B,) accuracy of ``model`` on (B, N, …) adversarial images made on another model, counting an image only
    where ``model`` also classifies the clean image correctly (as a white-box worst case does)."""
    flat = adversarial.reshape(-1, *adversarial.shape[2:])
    predicted = predict_logits(model, flat).argmax(axis=1).reshape(adversarial.shape[:2])
    return ((predicted == labels) & clean_correct).mean(axis=1)


def robust_share(correct: np.ndarray, budgets, *, up_to: float) -> np.ndarray:
    """Per image, the share of the budgets 0 < ε ≤ ``up_to`` at which it stays correct.

    On an evenly spaced grid this is the area under the image's robust-accuracy curve from 0 to ``up_to``
    divided by ``up_to`` (right Riemann sum); averaged over images it is the area under the robust-accuracy curve.
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2 or correct.shape[0] != len(budgets):
        raise ValueError(f"correct: expected ({len(budgets)}, N) flags, got shape {correct.shape}")
    up_to = check_float("up_to", up_to, minimum=0.0, strict_minimum=True)
    inside = (budgets > 0) & (budgets <= up_to + 1e-9)
    if not inside.any():
        raise ValueError(f"up_to: no budget in (0, {up_to:g}] among {budgets.tolist()}")
    return correct[inside].mean(axis=0)


@dataclass(frozen=True)
class Gain:
    """A defended model's paired gain over the reference on the summary statistic."""

    model: str
    effect: float  # mean over seeds and images, defended − reference
    low: float  # interval at the family-wise level (Bonferroni over the compared models)
    high: float
    p_value: float  # one-sided bootstrap p-value of "gain ≤ 0"
    p_holm: float  # Holm-adjusted over the compared models
    n_seeds: int
    n_images: int
    p_mc: float = 0.0  # Monte-Carlo standard error of p_holm (the bootstrap's own randomness)
    low_mc: float = 0.0  # … and of each interval bound
    high_mc: float = 0.0


def paired_gains(
    values: Mapping[str, np.ndarray], *, reference: str, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, Gain]:
    """Gain of every model over ``reference`` on a per-image statistic, paired over images.

    Args:
        values: per model, (seeds, images) values of the statistic; every model on the same images in the same
            order (their seeds are independent training runs).
        reference: the model the others are compared with (the undefended one).
        level: family-wise confidence level: each interval is at level 1 − (1 − level)/m for m compared models.
    """
    if reference not in values:
        raise ValueError(f"reference: {reference!r} is not one of {sorted(values)}")
    arrays = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    n_images = arrays[reference].shape[1]
    for name, array in arrays.items():
        if array.ndim != 2 or array.shape[1] != n_images:
            raise ValueError(f"values: {name!r} has shape {array.shape}; expected (seeds, {n_images}) on the same images")
    level = check_float("level", level, minimum=0.0, maximum=1.0, strict_minimum=True)
    others = [name for name in arrays if name != reference]
    if not others:
        return {}
    counts = image_counts(n_images, n_resamples=n_resamples, seed=seed)

    def draws(name: str, stream: int) -> np.ndarray:
        picks = seed_picks(arrays[name].shape[0], n_resamples=n_resamples, seed=seed + stream)
        return over_picked_seeds(per_seed_means(arrays[name], counts), picks)

    base = draws(reference, 1)
    family = 1 - (1 - level) / len(others)
    rows = {}
    for k, name in enumerate(others):
        diff = draws(name, 2 + k) - base
        low, high = interval(diff, level=family)
        tail = (1 - family) / 2
        rows[name] = dict(effect=float(arrays[name].mean() - arrays[reference].mean()), low=low, high=high,
                          p_value=float((1 + np.sum(diff <= 0)) / (len(diff) + 1)), n_seeds=int(arrays[name].shape[0]),
                          low_mc=quantile_mc_error(diff, tail), high_mc=quantile_mc_error(diff, 1 - tail))
    adjusted = holm([rows[name]["p_value"] for name in others])
    # Holm multiplies a p-value by at most the number of models, and so its Monte-Carlo error.
    return {name: Gain(model=name, p_holm=p, n_images=n_images, p_mc=min(1.0, len(others) * p_value_mc_error(rows[name]["p_value"],
                                                                                                        n_resamples)), **rows[name])
            for name, p in zip(others, adjusted, strict=True)}


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment: p_(i) ← max_{j ≤ i} min(1, (m − j + 1)·p_(j)), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p_values: expected probabilities in [0, 1], got {p_values!r}")
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted.tolist()


# --------------------------------------------------------------------------------------------------------------
# Controls for the oblivious transfer
# --------------------------------------------------------------------------------------------------------------


def margin_attack(
    model: keras.Model, images: np.ndarray, targets: np.ndarray, *, margin: float, step: float = 0.1, max_steps: int = 1000,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's attack (steps of L2 length ``step`` down the target's cross-entropy, pixels kept in [0, 1]),
    run until the target's logit exceeds every other by ``margin`` instead of stopping at the boundary.

    Returns (adversarial images, reached flags).
    """
    num_classes = check_classifier(model)
    images = check_model_images(model, images)
    targets = check_labels("targets", targets, length=len(images), num_classes=num_classes).astype(np.int32)
    margin = check_float("margin", margin, minimum=0.0)
    step = check_float("step", step, minimum=0.0, strict_minimum=True)
    max_steps = check_int("max_steps", max_steps, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    run = compiled(model, "margin attack", _build_margin_attack)
    out, reached = [], []
    for begin in range(0, len(images), batch_size):
        x, ok = run(tf.constant(images[begin : begin + batch_size]), tf.constant(targets[begin : begin + batch_size]),
                    tf.constant(margin, tf.float32), tf.constant(step, tf.float32), tf.constant(max_steps, tf.int32))
        out.append(x.numpy())
        reached.append(ok.numpy())
    return np.concatenate(out), np.concatenate(reached)


def _build_margin_attack(model: keras.Model):
    shape = (None, *model.input_shape[1:])
    expand = [-1] + [1] * (len(shape) - 1)
    gradient = loop_body(lambda x, targets: loss_and_gradient(model, x, targets, "cross_entropy"))

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.float32),
                                  tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32)])
    def run(x, targets, margin, step, max_steps):
        done = tf.zeros_like(targets, dtype=tf.bool)
        for i in tf.range(max_steps + 1):
            logits, grad = gradient(x, targets)
            target = tf.gather(logits, targets, batch_dims=1)
            others = tf.reduce_max(tf.where(tf.one_hot(targets, tf.shape(logits)[1]) > 0, -np.inf, logits), axis=1)
            done = done | (target - others >= margin)
            if tf.logical_or(tf.reduce_all(done), i == max_steps):
                break
            stepped = tf.clip_by_value(x - step * grad / safe_norms(l2_norms(grad), expand), 0.0, 1.0)
            x = tf.where(tf.reshape(done, expand), x, stepped)
        return x, done

    return run


def noise_like(images: np.ndarray, adversarial: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """``adversarial`` plus isotropic random noise whose L2 norm (after clipping to [0, 1]) equals each image's
    ‖adversarial − image‖₂: the same amount of change again, in a random direction."""
    sizes = np.sqrt(((adversarial - images).reshape(len(images), -1).astype(np.float64) ** 2).sum(axis=1))
    directions = np.random.default_rng(seed).standard_normal(adversarial.shape).astype(np.float32)
    out = np.empty_like(adversarial)
    for i, size in enumerate(sizes):
        out[i] = noise_of_norm(adversarial[i : i + 1], directions[i : i + 1], float(size))[0]
    return out


# --------------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------------


def check_strong_budgets(strong_budgets, budgets) -> np.ndarray:
    """The strong attack's budgets, each > 0 and one of the PGD ``budgets`` (so the two can be compared)."""
    strong = np.asarray(strong_budgets, dtype=np.float64)
    grid = np.asarray(budgets, dtype=np.float64)
    if strong.ndim != 1 or not len(strong) or np.any(strong <= 0) or np.any(np.diff(strong) <= 0):
        raise ValueError(f"strong_budgets: expected increasing budgets > 0, got {list(strong_budgets)}")
    missing = [float(b) for b in strong if not np.any(np.isclose(grid, b))]
    if missing:
        raise ValueError(f"strong_budgets: {missing} not among budgets {grid.tolist()}")
    return strong


def pooled_curve(flags: np.ndarray, *, n_resamples: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy at each budget over (seeds, budgets, images) flags, with a 95 % interval from a bootstrap over
    seeds and images."""
    flags = np.asarray(flags, dtype=np.float64)
    if flags.ndim != 3:
        raise ValueError(f"flags: expected (seeds, budgets, images), got shape {flags.shape}")
    counts = image_counts(flags.shape[2], n_resamples=n_resamples, seed=seed)
    picks = seed_picks(flags.shape[0], n_resamples=n_resamples, seed=seed + 1)
    low, high = [], []
    for k in range(flags.shape[1]):
        lo, hi = interval(over_picked_seeds(per_seed_means(flags[:, k], counts), picks))
        low.append(lo)
        high.append(hi)
    return flags.mean(axis=(0, 2)), np.array(low), np.array(high)


def curve_rows(
    *, model: str, label: str, images: str, budgets, curves: Mapping[str, Mapping[int, np.ndarray]], n_resamples: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """``robustness.csv`` rows of one model: per attack, one curve per training seed and one over all seeds.

    Args:
        curves: attack name → training seed → (budgets, images) flags ("still correct").
        images: which images the curves are on ("all" or "strong subset").
    """
    rows = []
    budgets = np.asarray(budgets, dtype=np.float64)
    for attack, by_seed in curves.items():
        parts = [(str(s), accuracy_curve_ci(flags, n_resamples=n_resamples, seed=seed)) for s, flags in by_seed.items()]
        if len(by_seed) > 1:
            parts.append(("all", pooled_curve(np.stack(list(by_seed.values())), n_resamples=n_resamples, seed=seed)))
        for seed_name, (accuracy, low, high) in parts:
            n = next(iter(by_seed.values())).shape[1]
            for k, eps in enumerate(budgets):
                rows.append({"model": model, "label": label, "seed": seed_name, "images": images, "attack": attack,
                             "budget": float(eps), "accuracy": float(accuracy[k]), "low": float(low[k]), "high": float(high[k]),
                             "n": n * (len(by_seed) if seed_name == "all" else 1)})
    return rows


def robustness_image_rows(
    *, model: str, seed: int, model_file: str, test_index: np.ndarray, labels: np.ndarray, budgets, correct: np.ndarray,
    evaluation: str,
) -> list[dict]:
    """``robustness_images.csv`` rows: per test image and budget ε > 0, whether the worst case broke it."""
    rows = []
    for k, eps in enumerate(np.asarray(budgets, dtype=np.float64)):
        if eps == 0:
            continue
        for i, index in enumerate(test_index):
            rows.append({"model": model, "seed": int(seed), "model_file": model_file, "test_index": int(index),
                         "label": int(labels[i]), "budget": float(eps), "evaluation": evaluation, "broken": not bool(correct[k, i])})
    return rows


def zero_gradient_count(model: keras.Model, images: np.ndarray, labels: np.ndarray, *, radius: float, draws: int = 3,
                        seed: int = 0) -> tuple[int, int]:
    """(gradients exactly 0, gradients computed) of the cross-entropy at the clean images and at ``draws`` random
    points at L2 distance ``radius`` from each, for the exact gradient and (for a defended model) BPDA."""
    from helpers.attacks.adaptive import input_gradient

    rng = np.random.default_rng(seed)
    points = [images] + [noise_of_norm(images, rng.standard_normal(images.shape).astype(np.float32), radius) for _ in range(draws)]
    views = [model] + ([bpda_model(model)] if has_defence(model) else [])
    zeros = tried = 0
    for view in views:
        for x in points:
            grad = input_gradient(view, x, labels)
            zeros += int(np.sum(np.all(grad.reshape(len(x), -1) == 0, axis=1)))
            tried += len(x)
    return zeros, tried
