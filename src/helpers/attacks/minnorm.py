"""A dedicated minimum-norm L2 attack (DDN), and the per-image minimum over several attacks.

The paper's attack (:mod:`helpers.attacks.attack`) stops at the first point of its path that reaches the target, so
its ‖δ‖₂ is an upper bound on the distance to the target's region, not the distance itself. A verdict on
"how far is the nearest adversarial" needs an attack that *minimises* the norm (Carlini et al. 2019) and the
per-image minimum over every attack we have (:func:`minimum_over`).

Method: *Decoupled Direction and Norm* (Rony et al. 2019, https://arxiv.org/abs/1811.09600). It keeps a
radius ε per example, takes a step of cosine-annealed length α along the L2-normalised gradient, shrinks ε by
a factor (1 − γ) while the iterate is adversarial and grows it by (1 + γ) otherwise, projects δ onto the
sphere ‖δ‖₂ = ε and clips pixels to [0, 1]; the smallest adversarial iterate is kept. We chose DDN over FMN
(Pintor et al. 2021) because its rule has a single, scale-free hyper-parameter γ and no line search or
boundary extrapolation that a BPDA gradient (which is *not* the gradient of the forward function) could
mislead; with 100–300 steps both reach similar norms on small models (Pintor et al., table 2). Foolbox's
``DDNAttack`` implements the same rule, so the two can be compared on the same images (tests/test_minnorm.py).
Like Foolbox we skip DDN's optional quantisation to 256 levels; unlike Foolbox we also judge the last iterate.

Engine: the steps run inside one compiled ``tf.function`` per model and mode (kept by
:func:`helpers.core.engine.compiled`), the whole budget in one call; Python only cuts the images into batches. With
early stopping (``stop_patience``) each call runs that many steps, and Python drops the images that have converged
before the next. A zero gradient is replaced by seeded Gaussian noise (as Foolbox does), so the result is
deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from helpers.core.contract import l2_distances, l2_norms
from helpers.core.engine import check_classifier, check_model_images, compiled, loop_body
from helpers.core.first_conv import attack_logits
from helpers.core.validate import check_choice, check_float, check_int, check_labels

LOSSES = ("cross_entropy", "logit_margin")


@dataclass
class MinNormResult:
    """Per-example outcome of :func:`ddn_l2` (arrays of length N)."""

    adversarial: np.ndarray  # float32: the smallest adversarial found, else the last iterate
    success: np.ndarray  # bool: an adversarial was found (the model's prediction on ``adversarial`` meets the goal)
    l2: np.ndarray  # float64 ‖adversarial − image‖₂ in [0, 1] pixel units (contract.l2_distances)
    steps: np.ndarray  # int: gradient steps taken (the whole budget unless stopped early: DDN refines after a success)
    found_at: np.ndarray  # int: the step whose iterate is returned (0 = the clean image; -1 = none adversarial)

    @property
    def success_rate(self) -> float:
        return float(self.success.mean()) if len(self.success) else float("nan")


def ddn_l2(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    targets: np.ndarray | None = None,
    steps: int = 100,
    init_epsilon: float = 1.0,
    gamma: float = 0.05,
    max_alpha: float = 1.0,
    min_alpha: float = 0.01,
    loss: str = "cross_entropy",
    seed: int = 0,
    batch_size: int = 256,
    stop_patience: int | None = None,
    stop_tolerance: float = 0.01,
) -> MinNormResult:
    """The smallest L2 perturbation DDN finds that changes the label (or, with ``targets``, reaches the target).

    Args:
        model: Keras model returning logits for [0, 1] images; its gradient is the attacker's (wrap a defended
            model in :func:`helpers.attacks.adaptive.bpda_model` for BPDA).
        images: (N, H, W, C) floats in [0, 1].
        labels: N true classes (the untargeted goal is to leave them).
        targets: N target classes for the paper's targeted setting (goal: the model predicts the target).
        steps: gradient steps per example (Foolbox's and the paper's default: 100).
        init_epsilon: starting radius ε₀ of the L2 sphere.
        gamma: ε ← ε·(1 − γ) while adversarial, ε·(1 + γ) otherwise; in (0, 1).
        max_alpha, min_alpha: the step length is annealed from ``max_alpha`` to ``min_alpha`` by a half cosine.
        loss: ``"cross_entropy"`` (as in DDN) or ``"logit_margin"`` (best other logit minus the aimed one).
        seed: seed of the noise that replaces a zero gradient.
        batch_size: images per compiled call.
        stop_patience: ``None`` (the default, and the book's studies): every image runs all ``steps``. Otherwise an
            image stops once it has an adversarial and its smallest ‖δ‖₂ has shrunk by less than ``stop_tolerance``
            (relative) over its last ``stop_patience`` steps, checked every ``stop_patience`` steps; the images still
            running go on as a smaller batch. The step-length schedule stays that of ``steps``.
        stop_tolerance: the relative shrinkage below which an image counts as converged, in (0, 1).

    >>> result = ddn_l2(model, x[:100], y[:100], targets=t[:100], steps=100)  # doctest: +SKIP
    >>> np.median(result.l2[result.success])  # doctest: +SKIP
    """
    num_classes = check_classifier(model)
    steps = check_int("steps", steps, minimum=1)
    init_epsilon = check_float("init_epsilon", init_epsilon, minimum=0.0, strict_minimum=True)
    gamma = check_float("gamma", gamma, minimum=0.0, maximum=0.999, strict_minimum=True)
    max_alpha = check_float("max_alpha", max_alpha, minimum=0.0, strict_minimum=True)
    min_alpha = check_float("min_alpha", min_alpha, minimum=0.0, maximum=max_alpha)
    loss = check_choice("loss", loss, LOSSES)
    seed = check_int("seed", seed, minimum=0, maximum=2**31 - 1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if stop_patience is not None:
        stop_patience = check_int("stop_patience", stop_patience, minimum=1)
    stop_tolerance = check_float("stop_tolerance", stop_tolerance, minimum=0.0, maximum=1.0, strict_minimum=True)
    images = check_model_images(model, images)
    labels = check_labels("labels", labels, length=len(images), num_classes=num_classes)
    targeted = targets is not None
    aims = check_labels("targets", targets, length=len(images), num_classes=num_classes) if targeted else labels

    run = compiled(model, ("ddn", targeted, loss), lambda m: _build_ddn(m, targeted=targeted, loss=loss))
    settings = [tf.constant(v, tf.float32) for v in (gamma, max_alpha, min_alpha)]
    chunk = steps + 1 if stop_patience is None else stop_patience
    adversarial = np.empty_like(images)
    success = np.empty(len(images), dtype=bool)
    found_at = np.empty(len(images), dtype=np.int32)
    taken = np.empty(len(images), dtype=np.int32)
    for start in range(0, len(images), batch_size):
        rows = np.arange(start, min(start + batch_size, len(images)))
        x0 = images[rows]
        state = (x0, np.full(len(rows), init_epsilon, np.float32), x0, np.full(len(rows), np.inf, np.float32),
                 np.full(len(rows), -1, np.int32))
        first = 0
        while len(rows):
            last = min(first + chunk, steps + 1)
            before = state[3]
            state = tuple(t.numpy() for t in run(
                tf.constant(x0), *(tf.constant(v) for v in state), tf.constant(aims[rows].astype(np.int32)),
                tf.constant(first, tf.int32), tf.constant(last, tf.int32), tf.constant(steps, tf.int32), *settings,
                tf.constant(seed, tf.int32)))
            x, _, best, best_l2, at = state
            done = np.full(len(rows), last > steps) | (np.isfinite(before) & (best_l2 >= (1.0 - stop_tolerance) * before))
            found = (at[done] >= 0).reshape([-1] + [1] * (x.ndim - 1))
            adversarial[rows[done]] = np.where(found, best[done], x[done])
            success[rows[done]], found_at[rows[done]], taken[rows[done]] = at[done] >= 0, at[done], min(last, steps)
            keep = ~done
            rows, x0, state = rows[keep], x0[keep], tuple(v[keep] for v in state)
            first = last
    return MinNormResult(adversarial=adversarial, success=success, l2=l2_distances(adversarial, images), steps=taken,
                         found_at=found_at)


def _objective(logits: tf.Tensor, aims: tf.Tensor, *, targeted: bool, loss: str) -> tf.Tensor:
    """Per-example loss the attack *descends*: toward ``aims`` when targeted, away from them otherwise."""
    if loss == "cross_entropy":
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=aims, logits=logits)
        return ce if targeted else -ce
    aimed = tf.gather(logits, aims, batch_dims=1)
    others = tf.reduce_max(tf.where(tf.one_hot(aims, tf.shape(logits)[1]) > 0, -np.inf, logits), axis=1)
    return others - aimed if targeted else aimed - others


def _build_ddn(model: keras.Model, *, targeted: bool, loss: str):
    shape = (None, *model.input_shape[1:])
    expand = [-1] + [1] * (len(shape) - 1)
    scalar = tf.TensorSpec([], tf.float32)

    @loop_body
    def logits_and_gradient(x, aims):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = attack_logits(model, x)
            objective = _objective(logits, aims, targeted=targeted, loss=loss)
        return logits, tape.gradient(objective, x)

    image, row, integer = tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)

    @tf.function(
        input_signature=[image, image, row, image, row, tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
                         integer, integer, integer, scalar, scalar, scalar, integer]
    )
    def run(x0, x, epsilon, best, best_l2, found_at, aims, first, last, n_steps, gamma, max_alpha, min_alpha, seed):
        """Passes ``first`` … ``last − 1`` of DDN's ``n_steps + 1``: each judges the iterate and (but the last of all)
        steps. Takes and returns the state (iterate, radius, smallest adversarial, its ‖δ‖₂, the pass that found it)."""
        worst = l2_norms(tf.maximum(x0, 1.0 - x0))  # no [0, 1] image is farther from x0
        for i in tf.range(first, last):
            logits, grad = logits_and_gradient(x, aims)
            predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
            adversarial = tf.equal(predicted, aims) if targeted else tf.not_equal(predicted, aims)
            delta = x - x0
            better = adversarial & (l2_norms(delta) < best_l2)
            best_l2 = tf.where(better, l2_norms(delta), best_l2)
            best = tf.where(tf.reshape(better, expand), x, best)
            found_at = tf.where(better, i, found_at)
            # The step: descend the normalised gradient, resize ε, project onto its sphere, clip to [0, 1].
            progress = tf.cast(i, tf.float32) / tf.cast(n_steps, tf.float32)
            alpha = min_alpha + (max_alpha - min_alpha) * (1.0 + tf.cos(math.pi * progress)) / 2.0
            grad = _nonzero(grad, tf.stack([seed, i]), expand)
            delta = delta - alpha * grad / tf.reshape(l2_norms(grad), expand)
            epsilon = tf.minimum(epsilon * tf.where(adversarial, 1.0 - gamma, 1.0 + gamma), worst)
            length = l2_norms(delta)
            delta = delta * tf.reshape(tf.where(length > 0, epsilon / tf.where(length > 0, length, 1.0), 1.0), expand)
            x = tf.where(i < n_steps, tf.clip_by_value(x0 + delta, 0.0, 1.0), x)
        return x, epsilon, best, best_l2, found_at

    return run


def _nonzero(grad: tf.Tensor, seed: tf.Tensor, expand: list[int]) -> tf.Tensor:
    """``grad`` with every all-zero example replaced by seeded Gaussian noise (a direction to move in)."""
    zero = tf.equal(l2_norms(grad), 0.0)
    return tf.cond(
        tf.reduce_any(zero),
        lambda: tf.where(tf.reshape(zero, expand), tf.random.stateless_normal(tf.shape(grad), seed), grad),
        lambda: grad,
    )


# --------------------------------------------------------------------------------------------------------------
# The strongest measure: the per-image minimum over attacks
# --------------------------------------------------------------------------------------------------------------


def minimum_over(*results: Any) -> np.ndarray:
    """Per-image minimum ‖δ‖₂ over several attacks' results on the same images (failures count as +inf).

    Each result needs per-example ``l2`` and ``success`` arrays of the same length (:class:`MinNormResult`,
    :class:`helpers.attacks.attack.AttackResult`, …). An image no attack broke gets +inf.

    >>> minimum_over(targeted_attack(model, x, t), ddn_l2(model, x, y, targets=t))  # doctest: +SKIP
    """
    return _distances(results).min(axis=0)


def argmin_over(*results: Any) -> np.ndarray:
    """Per image, the position (0-based, in the argument list) of the attack giving :func:`minimum_over`'s
    distance; the first one on ties, -1 where no attack succeeded."""
    distances = _distances(results)
    return np.where(np.isfinite(distances).any(axis=0), distances.argmin(axis=0), -1)


def _distances(results: tuple) -> np.ndarray:
    """(attacks, N) float64 distances with failures as +inf, after checking the results agree in length."""
    if not results:
        raise TypeError("results: expected at least one attack result with .l2 and .success")
    rows = []
    for k, result in enumerate(results):
        if not hasattr(result, "l2") or not hasattr(result, "success"):
            raise TypeError(f"results: argument {k} ({type(result).__name__}) has no .l2 and .success arrays")
        l2, success = np.asarray(result.l2, np.float64), np.asarray(result.success, bool)
        if l2.ndim != 1 or l2.shape != success.shape or (rows and l2.shape != rows[0].shape):
            raise ValueError(f"results: argument {k} has l2 {l2.shape} / success {success.shape}; all must be (N,) alike")
        rows.append(np.where(success, l2, np.inf))
    return np.stack(rows)
