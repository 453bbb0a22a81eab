"""Chapter 7's defences beside the blur: the smoothed classifier of randomized smoothing, attacked empirically,
and the checks that tie its certificate to that attack.

* :func:`smoothed_predict` — the smoothed classifier's answer, the most frequent class of the base model on
  ``n`` noisy copies (a majority vote; no abstention).
* :func:`smoothed_pgd` — PGD-L2 against the smoothed classifier with expectation over the noise (EOT, as in
  Salman et al. 2019's SmoothAdv): each step follows the gradient of −log of the base model's softmax averaged
  over ``samples`` fresh noise draws; the final point is judged by :func:`smoothed_predict`.
* :func:`certified_flags` — per radius and image, "certified correct at least that far" (CERTIFY's answer).
* :func:`certificate_violations` — images certified correct at radius ≥ ε that the attack broke at ε. A
  certificate holds with probability 1 − α, so more than a handful is a bug.
* :func:`chapter6_flags`, :func:`chapter7_flags` — per-image flags read back from the per-image results files.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from helpers.core.contract import l2_step
from helpers.core.engine import check_budgets, check_classifier, check_model_images, compiled, loop_body
from helpers.core.first_conv import attack_logits
from helpers.core.validate import check_float, check_int, check_labels
from helpers.defences.smoothing import Certificate, sample_counts


def smoothed_predict(model: keras.Model, images: np.ndarray, *, sigma: float, n: int, seed: int = 0) -> np.ndarray:
    """(N,) the class the base model predicts most often on ``n`` copies x + N(0, σ²I) of each image."""
    return sample_counts(model, images, sigma=sigma, n=n, seed=seed).argmax(axis=1)


@dataclass(frozen=True)
class SmoothedAttack:
    """Per budget and image, the outcome of :func:`smoothed_pgd` (B budgets, N images)."""

    budgets: np.ndarray  # (B,)
    correct: np.ndarray  # (B, N) bool: the smoothed classifier still answers the label at the final point
    adversarial: np.ndarray  # (B, N, H, W, C) the final point

    @property
    def accuracy(self) -> np.ndarray:
        return self.correct.mean(axis=1)


def smoothed_pgd(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    sigma: float,
    budgets,
    steps: int = 20,
    samples: int = 8,
    n_predict: int = 1000,
    step_ratio: float = 2.5,
    seed: int = 0,
    batch_size: int = 64,
    clean_prediction: np.ndarray | None = None,
) -> SmoothedAttack:
    """PGD-L2 with expectation over the noise against the smoothed version of ``model`` (noise level ``sigma``).

    Each of ``steps`` steps moves ``step_ratio·ε/steps`` along the L2-normalised gradient of
    −log(mean over ``samples`` noise draws of softmax(f(x + δ + η))[label]), then projects δ onto ‖δ‖₂ ≤ ε and
    x + δ onto [0, 1]. The smoothed classifier is then asked at x + δ with ``n_predict`` noisy copies; at ε = 0 it
    answers ``clean_prediction`` when given (e.g. :attr:`helpers.defences.smoothing.Certificate.majority`, already counted).

    >>> attack = smoothed_pgd(noise_model, x[:50], y[:50], sigma=0.5, budgets=[0, 1, 2])  # doctest: +SKIP
    """
    num_classes = check_classifier(model)
    images = check_model_images(model, images)
    labels = check_labels("labels", labels, length=len(images), num_classes=num_classes).astype(np.int32)
    sigma = check_float("sigma", sigma, minimum=0.0, strict_minimum=True)
    budgets = check_budgets(budgets)
    steps = check_int("steps", steps, minimum=1)
    samples = check_int("samples", samples, minimum=1)
    n_predict = check_int("n_predict", n_predict, minimum=1)
    step_ratio = check_float("step_ratio", step_ratio, minimum=0.0, maximum=100.0, strict_minimum=True)
    seed = check_int("seed", seed, minimum=0, maximum=2**31 - 2)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    run = compiled(model, ("smoothed_pgd", samples), lambda m: _build_smoothed_pgd(m, samples))
    n, b = len(images), len(budgets)
    adversarial = np.repeat(images[None], b, axis=0)
    for k, eps in enumerate(budgets):
        if eps == 0:
            continue
        for start in range(0, n, batch_size):
            rows = slice(start, min(start + batch_size, n))
            adversarial[k, rows] = run(
                tf.constant(images[rows]), tf.constant(labels[rows]), tf.constant(float(eps)),
                tf.constant(float(step_ratio * eps / steps)), tf.constant(steps, tf.int32), tf.constant(sigma, tf.float32),
                tf.constant([seed, k * n + start], tf.int32),
            ).numpy()
    if clean_prediction is not None:
        clean_prediction = check_labels("clean_prediction", clean_prediction, length=n, num_classes=num_classes)
    asked = [k for k, eps in enumerate(budgets) if eps > 0 or clean_prediction is None]
    predicted = np.empty((b, n), dtype=np.int64)
    if clean_prediction is not None:
        predicted[budgets == 0] = clean_prediction
    if asked:
        flat = adversarial[asked].reshape(len(asked) * n, *images.shape[1:])
        predicted[asked] = smoothed_predict(model, flat, sigma=sigma, n=n_predict, seed=seed + 1).reshape(len(asked), n)
    return SmoothedAttack(budgets=budgets, correct=predicted == labels, adversarial=adversarial)


def _build_smoothed_pgd(model: keras.Model, samples: int):
    shape = (None, *model.input_shape[1:])

    @loop_body
    def expected_gradient(x, noise, rows):
        """The input gradient of −log of the label's probability averaged over the noisy copies (EOT)."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = attack_logits(model, tf.repeat(x, samples, axis=0) + noise)
            mean = tf.reduce_mean(tf.reshape(tf.nn.softmax(logits), [tf.shape(x)[0], samples, -1]), axis=1)
            loss = -tf.math.log(tf.gather_nd(mean, rows) + 1e-12)
        return tape.gradient(loss, x)

    @tf.function(input_signature=[
        tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.float32),
        tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int32),
    ])
    def run(x0, labels, eps, alpha, n_steps, sigma, seed):
        count = tf.shape(x0)[0]
        copies = tf.concat([[count * samples], tf.shape(x0)[1:]], axis=0)
        rows = tf.stack([tf.range(count), labels], axis=1)
        x = x0
        for i in tf.range(n_steps):
            noise = sigma * tf.random.stateless_normal(copies, seed=seed + tf.stack([0, i * 7919]))
            x = l2_step(x, x0, expected_gradient(x, noise, rows), alpha=alpha, eps=eps)
        return x

    return run


def certified_flags(certificate: Certificate, labels: np.ndarray, radii) -> np.ndarray:
    """(R, N) flags: image certified as its label with a radius of at least r, for each r of ``radii``."""
    labels = np.asarray(labels)
    radii = np.asarray(radii, dtype=np.float64)
    right = certificate.prediction == labels
    return right[None] & (certificate.radius[None] >= radii[:, None])


def certificate_violations(certified: np.ndarray, empirical: np.ndarray) -> np.ndarray:
    """(B,) per budget, how many images are certified correct there (``certified``, (B, N)) yet were broken by
    the attack at that budget (``empirical``, (B, N) "still correct")."""
    certified, empirical = np.asarray(certified, dtype=bool), np.asarray(empirical, dtype=bool)
    if certified.shape != empirical.shape:
        raise ValueError(f"empirical: shape {empirical.shape} differs from the certified flags' {certified.shape}")
    return (certified & ~empirical).sum(axis=1)


def chapter6_flags(rows, *, model: str, seeds, test_index: np.ndarray, budgets, evaluation: str = "strongest worst case") -> np.ndarray:
    """(seeds, budgets, images) "still correct" flags of one of chapter 6's models, read back from
    ``robustness_images.csv`` rows, for exactly the test images ``test_index`` in that order. Raises when the file
    lacks one of them (chapter 6 ran on other digits or budgets: rerun it)."""
    found = {(int(r["seed"]), float(r["budget"]), int(r["test_index"])): not r["broken"] for r in rows
             if r["model"] == model and r["evaluation"] == evaluation}
    return _flags(found, seeds, budgets, test_index, missing=f"robustness_images.csv: no {evaluation!r} row for {model}",
                  rerun="chapter 6")


def chapter7_flags(rows, *, parameter: str, measure: str, seeds, test_index: np.ndarray, budgets) -> np.ndarray:
    """(seeds, budgets, images) flags of one trusted defence (``"robust"`` under ``measure``, ``"attacked"`` or
    ``"certified"``), read back from ``alternatives_images.csv`` rows like :func:`chapter6_flags`."""
    found = {(int(r["seed"]), float(r["budget"]), int(r["test_index"])): bool(r["robust"]) for r in rows
             if r["parameter"] == parameter and r["measure"] == measure}
    return _flags(found, seeds, budgets, test_index, missing=f"alternatives_images.csv: no {measure!r} row for {parameter}",
                  rerun="the first page of chapter 7")


def _flags(found: dict, seeds, budgets, test_index, *, missing: str, rerun: str) -> np.ndarray:
    """``found`` ((seed, budget, test index) → flag) as a (seeds, budgets, images) array in the asked order."""
    test_index = np.asarray(test_index)
    budgets = np.asarray(budgets, dtype=np.float64)
    flags = np.zeros((len(seeds), len(budgets), len(test_index)), dtype=bool)
    for s, seed in enumerate(seeds):
        for b, budget in enumerate(budgets):
            for i, index in enumerate(test_index):
                key = (int(seed), float(budget), int(index))
                if key not in found:
                    raise ValueError(f"{missing}, seed {seed}, ε = {budget:g}, test image {index}; rerun {rerun} with these parameters")
                flags[s, b, i] = found[key]
    return flags


def method_rows(
    *, method: str, parameter: str, measure: str, budgets, flags: dict[int, np.ndarray], clean_accuracy: float,
    train_cpu_seconds: float, eval_cpu_seconds_per_image: float, n_resamples: int = 1000, seed: int = 0,
) -> list[dict]:
    """``alternatives.csv`` rows of one method and measure: per training seed and over all seeds, the accuracy at
    each budget with its 95 % interval (bootstrap over images, and seeds for "all"), its clean accuracy and cost.

    Args:
        flags: training seed → (budgets, images) flags ("robust" or "certified correct" at that budget).
    """
    from helpers.studies.adaptive_study import curve_rows

    rows = curve_rows(model=method, label=parameter, images="", budgets=budgets, curves={measure: flags},
                      n_resamples=n_resamples, seed=seed)
    return [{"method": method, "parameter": parameter, "seed": r["seed"], "measure": measure, "budget": r["budget"],
             "clean_accuracy": float(clean_accuracy), "accuracy": r["accuracy"], "low": r["low"], "high": r["high"], "n": r["n"],
             "train_cpu_seconds": float(train_cpu_seconds), "eval_cpu_seconds_per_image": float(eval_cpu_seconds_per_image)}
            for r in rows]
