"""Plumbing shared by every attack engine: per-model compiled functions, per-example norms, model checks.

Each attack family (the paper's attack in :mod:`helpers.attack`, fixed-budget PGD in :mod:`helpers.adaptive`,
the timing references of the performance chapter) compiles its loop once per model and keeps it here, under
a key of its own; norms and argument checks are written once so that every engine measures ‖δ‖₂ alike.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from helpers.validate import check_float, check_images

_ATTRIBUTE = "_helpers_compiled"


def compiled(model: keras.Model, key: Hashable, build: Callable[[], Any]) -> Any:
    """The compiled function ``build()`` made for ``model`` under ``key``, built on first use and kept as long as
    the model lives (so a second attack on the same model does not retrace).

    The functions live in the model's own ``__dict__`` (past Keras' attribute tracking, so never saved with it):
    they refer to the model, and a global table keyed by the model would keep every model ever attacked alive.
    """
    per_model = model.__dict__.setdefault(_ATTRIBUTE, {})
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]


def l2_norms(t: tf.Tensor) -> tf.Tensor:
    """‖t_i‖₂ of every example of a batch (all axes but the first), inside a compiled function."""
    return tf.sqrt(tf.reduce_sum(tf.reshape(tf.square(t), [tf.shape(t)[0], -1]), axis=1))


def l2_step(x: tf.Tensor, origin: tf.Tensor, grad: tf.Tensor, *, alpha, eps) -> tf.Tensor:
    """One PGD-L2 step inside a compiled function: move ``alpha`` along the L2-normalised ``grad`` (ascending it),
    project back onto the ball ‖x − origin‖₂ ≤ ``eps``, and clip the pixels to [0, 1]."""
    expand = [-1] + [1] * (len(x.shape) - 1)
    norm = l2_norms(grad)
    moved = x + alpha * grad / tf.reshape(tf.where(norm > 0, norm, 1.0), expand)
    delta = moved - origin
    length = l2_norms(delta)
    shrink = tf.minimum(1.0, eps / tf.where(length > 0, length, 1.0))
    return tf.clip_by_value(origin + delta * tf.reshape(shrink, expand), 0.0, 1.0)


def l2_distances(a: np.ndarray, b: np.ndarray, *, batch_dims: int = 1) -> np.ndarray:
    """‖a − b‖₂ in float64 over all axes after the first ``batch_dims`` (b broadcasts against a)."""
    a, b = np.asarray(a), np.asarray(b)
    lead = a.shape[:batch_dims]
    diff = (a.astype(np.float64) - b.astype(np.float64)).reshape(int(np.prod(lead)), -1)
    return np.sqrt((diff**2).sum(axis=1)).reshape(lead)


def check_classifier(model: Any) -> int:
    """A Keras model returning one logit per class; returns the number of classes."""
    if not callable(model) or not hasattr(model, "output_shape"):
        raise TypeError(f"model: expected a keras.Model returning logits, got {type(model).__name__}")
    return int(model.output_shape[-1])


def check_model_images(
    model: keras.Model, images: Any, *, name: str = "images", value_range: tuple[float, float] | None = (0.0, 1.0)
) -> np.ndarray:
    """A float32 batch whose image shape is the model's input shape."""
    images = check_images(name, images, value_range=value_range)
    if tuple(images.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(f"{name}: shape {images.shape[1:]} does not match the model input {tuple(model.input_shape[1:])}")
    return images


def forward_function(model: keras.Model):
    """The model's compiled inference pass (logits), shared by every caller."""

    def build():
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        return tf.function(lambda x: model(x, training=False), input_signature=[spec])

    return compiled(model, "forward", build)


def check_budgets(budgets) -> np.ndarray:
    """A non-empty list of L2 budgets ε ≥ 0, as float64 (every fixed-budget attack takes one)."""
    if not isinstance(budgets, (list, tuple, np.ndarray)) or len(budgets) == 0:
        raise TypeError(f"budgets: expected a non-empty list of L2 budgets >= 0, got {budgets!r}")
    return np.array([check_float("budgets", e, minimum=0.0) for e in budgets], dtype=np.float64)
