"""What every attack shares: the fixed-budget result type and the L2 steps.

Each attack's compiled loop is its own, but the geometry is written once, here, so that every attack measures and
moves alike: the per-example norm (:func:`l2_norms`), the L2-normalised gradient (:func:`normalise`: a zero gradient
does not move), the projection onto the ball ‖x − origin‖₂ ≤ ε followed by the pixel range (:func:`project_l2`),
one PGD step (:func:`l2_step`), and the float64 distances the results report (:func:`l2_distances`). The tensor
functions run inside compiled functions; ``expand`` is ``[-1, 1, 1, 1]`` for a batch of images (a per-example
value reshaped to broadcast over pixels).

It sits in the core (not with the attacks) because adversarial training (:mod:`helpers.defences.robust_training`)
takes the same PGD step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass
class RobustnessResult:
    """Per-budget, per-example outcome of a fixed-budget attack (B budgets, N images): PGD, APGD, Square, noise."""

    budgets: np.ndarray  # (B,) ε in [0, 1] pixel units
    correct: np.ndarray  # (B, N) bool: the true label at every point tried within the budget
    success: np.ndarray  # (B, N) bool: the attacker's goal was met (untargeted: == ~correct)
    adversarial: np.ndarray  # (B, N, H, W, C): the first misclassified point tried, else the last one
    l2: np.ndarray  # (B, N) ‖adversarial − image‖₂
    gradient_norm: np.ndarray  # (N,) ‖∇ loss‖₂ at the clean image (NaN for a gradient-free attack or noise)

    @property
    def accuracy(self) -> np.ndarray:
        """Robust accuracy at each budget."""
        return self.correct.mean(axis=1)

    def take_breaks(self, budget: int, pick: np.ndarray, again: RobustnessResult) -> None:
        """Record, in place, the pairs that ``again`` (a later run on the images ``pick`` at this result's budget row
        ``budget``, its own last row) broke: they count as broken, with its adversarial and distance."""
        broken = ~again.correct[-1]
        where = np.asarray(pick)[broken]
        self.correct[budget, where], self.success[budget, where] = False, True
        self.adversarial[budget, where] = again.adversarial[-1][broken]
        self.l2[budget, where] = again.l2[-1][broken]


def l2_norms(t: tf.Tensor) -> tf.Tensor:
    """‖t_i‖₂ of every example of a batch (all axes but the first), inside a compiled function."""
    return tf.sqrt(tf.reduce_sum(tf.reshape(tf.square(t), [tf.shape(t)[0], -1]), axis=1))


def safe_norms(norm: tf.Tensor, expand: list[int]) -> tf.Tensor:
    """Per-example norms shaped to broadcast over an example, with 0 replaced by 1 (a zero vector stays zero)."""
    return tf.reshape(tf.where(norm > 0, norm, 1.0), expand)


def normalise(grad: tf.Tensor, expand: list[int], *, norm: tf.Tensor | None = None) -> tf.Tensor:
    """``grad`` divided by its per-example L2 norm (``norm`` when already computed); a zero gradient stays zero."""
    return grad / safe_norms(l2_norms(grad) if norm is None else norm, expand)


def project_l2(x: tf.Tensor, origin: tf.Tensor, eps: tf.Tensor, expand: list[int]) -> tf.Tensor:
    """``x`` projected onto the ball ‖x − origin‖₂ ≤ ``eps`` (per example), then clipped to [0, 1] (clipping only
    shortens δ, so the result stays in the ball)."""
    delta = x - origin
    length = l2_norms(delta)
    shrink = tf.minimum(1.0, eps / tf.where(length > 0, length, 1.0))
    return tf.clip_by_value(origin + delta * tf.reshape(shrink, expand), 0.0, 1.0)


def l2_step(x: tf.Tensor, origin: tf.Tensor, grad: tf.Tensor, *, alpha, eps) -> tf.Tensor:
    """One PGD-L2 step: move ``alpha`` along the L2-normalised ``grad`` (ascending it), then :func:`project_l2`."""
    expand = [-1] + [1] * (len(x.shape) - 1)
    return project_l2(x + alpha * grad / safe_norms(l2_norms(grad), expand), origin, eps, expand)


def l2_distances(a: np.ndarray, b: np.ndarray, *, batch_dims: int = 1) -> np.ndarray:
    """‖a − b‖₂ in float64 over all axes after the first ``batch_dims`` (b broadcasts against a)."""
    a, b = np.asarray(a), np.asarray(b)
    lead = a.shape[:batch_dims]
    diff = (a.astype(np.float64) - b.astype(np.float64)).reshape(int(np.prod(lead)), -1)
    return np.sqrt((diff**2).sum(axis=1)).reshape(lead)
