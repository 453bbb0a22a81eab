"""Adaptive attacks on the blur defence: BPDA, fixed-budget PGD-L2, a random-noise baseline.

The paper's attack runs until it wins and reports how far it went. A defence is better judged by how much
accuracy survives an attacker with a fixed budget ε who knows the defence (Carlini et al. 2019). This module
gives that attacker its tools:

* :func:`bpda_model` — the defended model with *Backward Pass Differentiable Approximation* (Athalye et al.
  2018): the filter runs in the forward pass, the identity is used in the backward pass.
* :func:`pgd_l2` — projected gradient descent in an L2 ball, for a grid of budgets in one batched, compiled
  loop, returning per-example "still correct" flags.
* :func:`random_noise` — the same ‖δ‖₂ in random directions, the baseline an attack must beat by far.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from helpers.attacks.attack import loss_and_gradient
from helpers.core.contract import RobustnessResult, l2_distances, l2_norms, normalise, project_l2
from helpers.core.engine import (
    check_budgets,
    check_classifier,
    check_model_images,
    compiled,
    forward_function,
    loop_body,
    predict_logits,
)
from helpers.core.validate import check_float, check_int, check_labels
from helpers.defences.filters import FILTER_KINDS, filter_layers, is_filter_layer, model_defence

# --------------------------------------------------------------------------------------------------------------
# BPDA
# --------------------------------------------------------------------------------------------------------------


class StraightThrough(keras.layers.Layer):
    """Run ``inner`` forwards, pass gradients through unchanged backwards (BPDA with g(x) = x).

    The output is ``stop_gradient(f(x)) + (x − stop_gradient(x))``: the bracket is exactly 0 in value, so the
    forward pass equals ``f(x)`` bit for bit, and its derivative is the identity.
    """

    def __init__(self, inner: keras.layers.Layer, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.inner = inner

    def call(self, inputs):
        return tf.stop_gradient(self.inner(inputs)) + (inputs - tf.stop_gradient(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "inner": keras.saving.serialize_keras_object(self.inner)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("inner")), **config)


def bpda_model(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose filter layers (any registered kind) are differentiated as the identity.

    The copy shares every other layer (and so the weights) with ``model``: its predictions are exactly those
    of ``model``; only its gradient differs, which is what an attacker using BPDA sees.

    >>> attacker_view = bpda_model(train_model("small_cnn", data, defence="median:3", epochs=5))  # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model: expected a keras.Model, got {type(model).__name__}")
    if not filter_layers(model):
        raise ValueError(f"model: {model.name} has no filter layer to approximate; BPDA needs a defended model")

    def swap(layer):
        if is_filter_layer(layer):
            return StraightThrough(layer, name=f"bpda_{layer.name}")
        return layer

    return keras.models.clone_model(model, clone_function=swap)


def input_gradient(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """∇ of the cross-entropy of ``labels`` with respect to the input images, as the attacker sees it."""
    num_classes = check_classifier(model)
    images = check_model_images(model, images)
    labels = check_labels("labels", labels, length=len(images), num_classes=num_classes)
    _, grad = loss_and_gradient(model, tf.constant(images), tf.constant(labels.astype(np.int32)), "cross_entropy")
    return grad.numpy()


def transfer_rates(model: keras.Model, labels: np.ndarray, adversarial: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Feed adversarial images made on another model to ``model``: share still on target, share correct (NaN for
    no images: no attack succeeded)."""
    num_classes = check_classifier(model)
    if len(adversarial) == 0:
        return {"still_target": float("nan"), "correct": float("nan")}
    adversarial = check_model_images(model, adversarial, name="adversarial")
    labels = check_labels("labels", labels, length=len(adversarial), num_classes=num_classes)
    targets = check_labels("targets", targets, length=len(adversarial), num_classes=num_classes)
    predicted = predict_logits(model, adversarial).argmax(axis=1)
    return {"still_target": float((predicted == targets).mean()), "correct": float((predicted == labels).mean())}


# --------------------------------------------------------------------------------------------------------------
# Fixed-budget PGD-L2
# --------------------------------------------------------------------------------------------------------------


def pgd_l2(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    budgets,
    steps: int = 40,
    step_ratio: float = 2.5,
    targets: np.ndarray | None = None,
    batch_size: int = 1024,
) -> RobustnessResult:
    """Projected gradient descent in the L2 ball of radius ε, for every budget ε of ``budgets``.

    Each iteration moves ``α = step_ratio·ε/steps`` along the L2-normalised gradient (ascending the
    cross-entropy of the true label, or descending the one of ``targets`` when given), projects the
    perturbation back onto ‖δ‖₂ ≤ ε and clips pixels to [0, 1] (clipping only shortens δ). Every point
    visited is classified: an image counts as *correct* at budget ε only if all of them keep its true label,
    so the clean image itself is the first point tried and ε = 0 gives the clean accuracy.

    Args:
        model: Keras model returning logits for [0, 1] images; its gradient is the attacker's (wrap it in
            :func:`bpda_model` for BPDA).
        images: (N, H, W, C) floats in [0, 1].
        labels: N true classes.
        budgets: non-negative L2 budgets ε in [0, 1] pixel units.
        steps: gradient steps per budget.
        step_ratio: α·steps/ε; above 1 so that the attack can reach the sphere and move along it.
        targets: N target classes for a targeted attack (``success`` = target predicted at some point).
        batch_size: images × budgets evaluated together in one compiled call.

    >>> result = pgd_l2(model, x[:100], y[:100], budgets=[0, 1, 2], steps=40)  # doctest: +SKIP
    >>> result.accuracy  # doctest: +SKIP
    """
    num_classes = check_classifier(model)
    budgets = check_budgets(budgets)
    steps = check_int("steps", steps, minimum=0)
    step_ratio = check_float("step_ratio", step_ratio, minimum=0.0, maximum=100.0, strict_minimum=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    images = check_model_images(model, images)
    labels = check_labels("labels", labels, length=len(images), num_classes=num_classes).astype(np.int32)
    targeted = targets is not None
    aims = labels if not targeted else check_labels("targets", targets, length=len(images), num_classes=num_classes).astype(np.int32)

    run = _compiled_pgd(model, targeted)
    n, b = len(images), len(budgets)
    # One row per (budget, image): budget-major, so reshaping to (B, N) recovers the grid.
    flat_index = np.tile(np.arange(n), b)
    flat_eps = np.repeat(budgets, n).astype(np.float32)
    correct = np.empty(b * n, dtype=bool)
    success = np.empty(b * n, dtype=bool)
    adversarial = np.empty((b * n, *images.shape[1:]), dtype=np.float32)
    gradient_norm = np.empty(b * n, dtype=np.float32)
    # A zero budget only needs the clean check: run those rows without steps.
    for rows_of_group, group_steps in ((np.flatnonzero(flat_eps == 0), 0), (np.flatnonzero(flat_eps > 0), steps)):
        for start in range(0, len(rows_of_group), batch_size):
            rows = rows_of_group[start : start + batch_size]
            idx, eps = flat_index[rows], flat_eps[rows]
            out = run(
                tf.constant(images[idx]), tf.constant(labels[idx]), tf.constant(aims[idx]), tf.constant(eps),
                tf.constant(step_ratio * eps / max(group_steps, 1)), tf.constant(group_steps, tf.int32),
            )
            adversarial[rows], correct[rows], success[rows], gradient_norm[rows] = (t.numpy() for t in out)
    return RobustnessResult(
        budgets=budgets,
        correct=correct.reshape(b, n),
        success=success.reshape(b, n),
        adversarial=adversarial.reshape(b, n, *images.shape[1:]),
        l2=l2_distances(adversarial, images[flat_index]).reshape(b, n),
        gradient_norm=gradient_norm[:n].astype(np.float64),
    )


def _compiled_pgd(model: keras.Model, targeted: bool):
    return compiled(model, ("pgd", targeted), lambda m: _build_pgd(m, targeted))


def _build_pgd(model: keras.Model, targeted: bool):
    shape = (None, *model.input_shape[1:])
    expand = [-1] + [1] * (len(shape) - 1)
    sign = -1.0 if targeted else 1.0  # targeted: descend the target's loss; untargeted: ascend the label's

    gradient = loop_body(lambda x, aims: loss_and_gradient(model, x, aims, "cross_entropy"))

    def judge(logits, labels, aims):
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        wrong = tf.not_equal(predicted, labels)
        return wrong, tf.equal(predicted, aims) if targeted else wrong

    @tf.function(
        input_signature=[
            tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32),
        ]
    )
    def run(x0, labels, aims, eps, alpha, n_steps):
        # Examples leave the computation once the attacker has won (untargeted: the label is lost; targeted:
        # the target is reached): the rest of their path cannot change their flags.
        x, kept = x0, x0
        ever_wrong = tf.zeros_like(labels, dtype=tf.bool)
        ever_hit = tf.zeros_like(labels, dtype=tf.bool)
        grad_norm0 = tf.zeros_like(eps)
        for i in tf.range(n_steps + 1):
            done = ever_hit if targeted else ever_wrong
            active = tf.where(~done)
            if tf.size(active) == 0:
                break
            xa, x0a, ea = tf.gather_nd(x, active), tf.gather_nd(x0, active), tf.gather_nd(eps, active)
            logits, grad = gradient(xa, tf.gather_nd(aims, active))
            wrong, hit = judge(logits, tf.gather_nd(labels, active), tf.gather_nd(aims, active))
            was_wrong = tf.gather_nd(ever_wrong, active)
            first = tf.reshape(wrong & ~was_wrong, expand)
            kept = tf.tensor_scatter_nd_update(kept, active, tf.where(first, xa, tf.gather_nd(kept, active)))
            ever_wrong = tf.tensor_scatter_nd_update(ever_wrong, active, was_wrong | wrong)
            ever_hit = tf.tensor_scatter_nd_update(ever_hit, active, tf.gather_nd(ever_hit, active) | hit)
            # Step (the last pass only judges): L2-normalised gradient, projection onto the ball, pixel range.
            norm = l2_norms(grad)
            grad_norm0 = tf.tensor_scatter_nd_update(grad_norm0, active, tf.where(i == 0, norm, tf.gather_nd(grad_norm0, active)))
            direction = normalise(grad, expand, norm=norm)
            stepped = project_l2(xa + sign * tf.reshape(tf.gather_nd(alpha, active), expand) * direction, x0a, ea, expand)
            x = tf.tensor_scatter_nd_update(x, active, tf.where(i < n_steps, stepped, xa))
        kept = tf.where(tf.reshape(ever_wrong, expand), kept, x)
        return kept, ~ever_wrong, ever_hit, grad_norm0

    return run


# --------------------------------------------------------------------------------------------------------------
# Random noise of the same size
# --------------------------------------------------------------------------------------------------------------


def random_noise(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    budgets,
    draws: int = 10,
    seed: int = 0,
    batch_size: int = 256,
) -> RobustnessResult:
    """Add ``draws`` random perturbations of L2 norm exactly ε (after clipping to [0, 1]) to every image.

    Directions are isotropic Gaussian; each is scaled (by bisection) so that ‖clip(x + s·u) − x‖₂ = ε, or as
    close as the pixel range allows. An image counts as *correct* if the clean image and every draw keep its
    label — the noise gets ``draws`` tries, the same courtesy as the attack's many steps.
    """
    num_classes = check_classifier(model)
    budgets = check_budgets(budgets)
    draws = check_int("draws", draws, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    images = check_model_images(model, images)
    labels = check_labels("labels", labels, length=len(images), num_classes=num_classes)

    rng = np.random.default_rng(seed)
    n, b = len(images), len(budgets)
    forward = forward_function(model)
    clean = predict_logits(model, images, batch_size=batch_size).argmax(axis=1) == labels
    correct = np.repeat(clean[None], b, axis=0)
    adversarial = np.repeat(images[None], b, axis=0)
    directions = rng.standard_normal((draws, *images.shape)).astype(np.float32)
    tiled = np.tile(images, (draws, 1, 1, 1))  # draw-major: row d·n + i is image i, draw d
    for k, eps in enumerate(budgets):
        if eps == 0:
            continue
        noisy = noise_of_norm(tiled, directions.reshape(tiled.shape), eps).reshape(draws, *images.shape)
        flat = noisy.reshape(tiled.shape)
        predicted = np.concatenate([forward(tf.constant(flat[i : i + batch_size])).numpy().argmax(axis=1) for i in range(0, len(flat), batch_size)])
        keeps = predicted.reshape(draws, n) == labels
        first_wrong = np.argmin(keeps, axis=0)  # the first draw that changed the label (0 if none did)
        fooled = ~keeps.all(axis=0) & clean
        adversarial[k][fooled] = noisy[first_wrong[fooled], np.flatnonzero(fooled)]
        correct[k] &= keeps.all(axis=0)
    return RobustnessResult(
        budgets=budgets, correct=correct, success=~correct, adversarial=adversarial,
        l2=l2_distances(adversarial, images[None], batch_dims=2), gradient_norm=np.full(n, np.nan),
    )


def noise_of_norm(images: np.ndarray, directions: np.ndarray, eps: float, *, iterations: int = 30) -> np.ndarray:
    """clip(x + s·u) with s per image such that the clipped perturbation has L2 norm ε (bisection on s)."""
    if eps == 0:
        return images.copy()
    n = len(images)
    u = directions / np.linalg.norm(directions.reshape(n, -1), axis=1).reshape(-1, *[1] * (images.ndim - 1))

    def length(scale):
        moved = np.clip(images + scale.reshape(-1, *[1] * (images.ndim - 1)) * u, 0.0, 1.0)
        return np.linalg.norm((moved - images).reshape(n, -1), axis=1), moved

    low = np.zeros(n)
    high = np.full(n, float(eps))
    for _ in range(60):  # grow the bracket until the clipped norm reaches ε (or stops growing)
        short = length(high)[0] < eps
        if not short.any():
            break
        high[short] *= 2.0
    for _ in range(iterations):
        mid = (low + high) / 2
        short = length(mid)[0] < eps
        low, high = np.where(short, mid, low), np.where(short, high, mid)
    return length(high)[1].astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# A robustness study of several models
# --------------------------------------------------------------------------------------------------------------


@dataclass
class RobustnessStudy:
    """Fixed-budget results for several models on the same images (see :func:`robustness_study`)."""

    budgets: np.ndarray
    attacks: dict[str, dict[str, RobustnessResult]]  # model → attack name ("exact", "BPDA") → result
    noise: dict[str, RobustnessResult]  # model → random noise of the same norms

    def worst(self, model: str) -> np.ndarray:
        """(B, N) flags: correct under *every* attack — the attacker picks the best attack per image."""
        return np.logical_and.reduce([r.correct for r in self.attacks[model].values()])


def models_under_test(evaluated, choices) -> dict[str, str]:
    """The defences to attack, each with its role: no defence, the paper's σ = 1.5 (when it is among the
    ``evaluated`` filters), and the best Gaussian and best median by the paper's score on the validation split
    (``choices``: :func:`helpers.studies.scores.validation_choices`, chapter 4)."""
    evaluated = [str(spec) for spec in evaluated]
    picks = [("none", "no defence")]
    if "gaussian:1.5" in evaluated:
        picks.append(("gaussian:1.5", "the paper's choice"))
    for kind in FILTER_KINDS.values():
        key, role = f"best_{kind.name}", f"best {kind.title} on validation"
        spec = choices.get(key)
        if spec:
            picks.append((str(spec), role))
    roles: dict[str, str] = {}
    for spec, role in picks:
        roles[spec] = f"{roles[spec]}; {role}" if spec in roles else role
    return roles


def has_defence(model: keras.Model) -> bool:
    """Whether ``model`` contains a Gaussian or median layer."""
    return bool(filter_layers(model))


def needs_bpda(model: keras.Model) -> bool:
    """Whether ``model`` has a filter of a kind that is not linear (the median), where BPDA's identity may find what
    the exact gradient misses. Through a linear filter (the Gaussian) the exact gradient is the true gradient of the
    whole model, and BPDA only approximates it."""
    defence = model_defence(model)
    return not defence.is_none and not FILTER_KINDS[defence.kind].linear


def robustness_study(
    models: dict[str, keras.Model],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    budgets,
    steps: int = 40,
    noise_draws: int = 10,
    seed: int = 0,
) -> RobustnessStudy:
    """PGD-L2 with the exact gradient on every model, with BPDA too on defended ones, and random noise.

    All models see the same images, so that their curves can be compared image by image.
    """
    if not isinstance(models, dict) or not models:
        raise TypeError(f"models: expected a non-empty dict of name → keras.Model, got {type(models).__name__}")
    attacks, noise = {}, {}
    for name, model in models.items():
        attacks[name] = {"exact": pgd_l2(model, images, labels, budgets=budgets, steps=steps)}
        if has_defence(model):
            attacks[name]["BPDA"] = pgd_l2(bpda_model(model), images, labels, budgets=budgets, steps=steps)
        noise[name] = random_noise(model, images, labels, budgets=budgets, draws=noise_draws, seed=seed)
    return RobustnessStudy(budgets=check_budgets(budgets), attacks=attacks, noise=noise)


# --------------------------------------------------------------------------------------------------------------
# Where the gradient through a filter can move the filtered image
# --------------------------------------------------------------------------------------------------------------


def gradient_reach(model: keras.Model, images: np.ndarray, targets: np.ndarray, *, epsilon: float = 0.05) -> dict[str, np.ndarray]:
    """Per image, for the paper's targeted loss and a model whose first layer is a filter: how many pixels have a
    non-zero input gradient; of those, how many have a descent step (``epsilon`` against the gradient's sign) that
    clipping to [0, 1] cancels; and of the rest, how many change the *filtered* image when moved alone.

    A median passes the gradient to whichever pixel its sort lists as the median, also where neighbours tie at 0
    (most of an MNIST digit): many such steps leave the median, and so the filtered image, unchanged.
    """
    num_classes = check_classifier(model)
    images = check_model_images(model, images)
    targets = check_labels("targets", targets, length=len(images), num_classes=num_classes).astype(np.int32)
    epsilon = check_float("epsilon", epsilon, minimum=0.0, maximum=1.0, strict_minimum=True)
    layers = filter_layers(model)
    if not layers:
        raise ValueError(f"model: {model.name} has no filter layer")
    _, grad = loss_and_gradient(model, tf.constant(images), tf.constant(targets), "cross_entropy")
    grad = grad.numpy().reshape(len(images), -1)
    counts = {k: np.zeros(len(images), dtype=np.int64) for k in ("nonzero", "clipped", "inert", "moves")}
    for i, image in enumerate(images):
        flat = image.reshape(-1)
        nonzero = np.flatnonzero(grad[i])
        moved = np.clip(flat[nonzero] - epsilon * np.sign(grad[i, nonzero]), 0.0, 1.0)
        live = moved != flat[nonzero]
        pixels, values = nonzero[live], moved[live]
        batch = np.repeat(flat[None], len(pixels), axis=0)
        batch[np.arange(len(pixels)), pixels] = values
        base = np.asarray(layers[0](image[None]))
        parts = [np.any(np.asarray(layers[0](batch[j : j + 512].reshape(-1, *image.shape))) != base, axis=(1, 2, 3))
                 for j in range(0, len(pixels), 512)]
        changed = np.concatenate(parts).astype(bool) if parts else np.zeros(0, bool)
        counts["nonzero"][i], counts["clipped"][i] = len(nonzero), int((~live).sum())
        counts["moves"][i], counts["inert"][i] = int(changed.sum()), int((~changed).sum())
    return counts
