"""The paper's targeted iterative attack, batched and compiled.

For a target class ``t`` the attack repeats ``I ← I − α·g/‖g‖₂`` with ``g = ∇_I L(f(I), t)`` until the
model predicts ``t`` (Jézéquel 2019, section 2). ``L`` is the cross-entropy to the target; the paper's code
listing instead ascends the target's softmax probability (``objective="target_probability"``).

Engine: a fixed-size working batch runs in one compiled ``tf.function``. Each example stops as soon as it
reaches its target (it never moves again), runs out of steps, or has a zero gradient (``stalled``: it could
never move again). Finished examples leave the working batch and waiting ones take their slots, so the cost
is proportional to the steps each example needs, not to the slowest example of a batch.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from helpers.validate import check_choice, check_float, check_images, check_int, check_labels

OBJECTIVES = ("cross_entropy", "target_probability")
RUNNING, REACHED, STALLED, OUT_OF_STEPS = 0, 1, 2, 3


@dataclass
class AttackResult:
    """Per-example outcome of :func:`targeted_attack` (arrays of length N)."""

    adversarial: np.ndarray  # float32, same shape as the images
    success: np.ndarray  # bool: the model predicts the target on ``adversarial``
    steps: np.ndarray  # int: update steps taken
    l2: np.ndarray  # float: ‖adversarial − image‖₂ in [0, 1] pixel units
    stalled: np.ndarray  # bool: stopped by a zero gradient

    @property
    def success_rate(self) -> float:
        return float(self.success.mean()) if len(self.success) else float("nan")


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def targeted_attack(
    model: keras.Model,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    step: float = 0.1,
    max_steps: int = 1000,
    objective: str = "cross_entropy",
    clip: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 256,
    chunk_steps: int = 8,
    progress: bool = True,
) -> AttackResult:
    """Run the paper's targeted attack on every image until it is classified as its target.

    Args:
        model: a Keras model returning logits for [0, 1] images (defence layers inside it are
            differentiated through).
        images: float array (N, H, W, C) with values in [0, 1].
        targets: N integer target classes.
        step: α, the L2 length of every update, in [0, 1] pixel units.
        max_steps: most updates per example (the paper uses 1000).
        objective: ``"cross_entropy"`` (descend the loss to the target, as in the paper's text) or
            ``"target_probability"`` (ascend the target's softmax, as in its code listing).
        clip: keep pixels in this range after each step; ``None`` disables clipping, like the paper.
        batch_size: size of the working batch.
        chunk_steps: steps run per compiled call before finished examples are swapped out.
        progress: show a progress bar of finished examples.

    >>> result = targeted_attack(model, x_test[:10], targets[:10])  # doctest: +SKIP
    >>> result.success.mean(), np.median(result.l2)  # doctest: +SKIP
    """
    if not callable(model) or not hasattr(model, "output_shape"):
        raise TypeError(f"model: expected a keras.Model returning logits, got {type(model).__name__}")
    step = check_float("step", step, minimum=0.0, strict_minimum=True)
    max_steps = check_int("max_steps", max_steps, minimum=0)
    objective = check_choice("objective", objective, OBJECTIVES)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    chunk_steps = check_int("chunk_steps", chunk_steps, minimum=1)
    low, high = _check_clip(clip)
    images = check_images("images", images, value_range=None if clip is None else (low, high))
    num_classes = int(model.output_shape[-1])
    targets = check_labels("targets", targets, length=len(images), num_classes=num_classes)
    if tuple(images.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(f"images: shape {images.shape[1:]} does not match the model input {tuple(model.input_shape[1:])}")

    run_chunk = _compiled(model, objective)
    n = len(images)
    width = min(batch_size, n)
    adversarial = images.copy()
    status_out = np.zeros(n, dtype=np.int32)
    steps_out = np.zeros(n, dtype=np.int32)

    # The working batch: slot i holds example ``owner[i]`` (-1: empty).
    owner = np.arange(width)
    x = images[:width].copy()
    t = targets[:width].astype(np.int32)
    steps = np.zeros(width, dtype=np.int32)
    status = np.zeros(width, dtype=np.int32)
    next_example = width
    settings = (
        tf.constant(chunk_steps), tf.constant(max_steps), tf.constant(step, tf.float32),
        tf.constant(low, tf.float32), tf.constant(high, tf.float32), tf.constant(clip is not None),
    )
    with tqdm(total=n, desc="attack", unit="img", disable=not progress, leave=False) as bar:
        while (owner >= 0).any():
            x_t, steps_t, status_t = run_chunk(tf.constant(x), tf.constant(t), tf.constant(steps), tf.constant(status), *settings)
            x, steps, status = x_t.numpy(), steps_t.numpy(), status_t.numpy()
            finished = np.flatnonzero((status != RUNNING) & (owner >= 0))
            for slot in finished:
                i = owner[slot]
                adversarial[i], steps_out[i], status_out[i] = x[slot], steps[slot], status[slot]
                owner[slot] = -1
            bar.update(len(finished))
            # Refill free slots with waiting examples, then drop empty slots once nothing is waiting.
            for slot in finished:
                if next_example < n:
                    owner[slot] = next_example
                    x[slot], t[slot] = images[next_example], targets[next_example]
                    steps[slot], status[slot] = 0, RUNNING
                    next_example += 1
            if next_example >= n:
                keep = owner >= 0
                owner, x, t, steps, status = owner[keep], x[keep], t[keep], steps[keep], status[keep]

    diff = (adversarial.astype(np.float64) - images.astype(np.float64)).reshape(n, -1)
    return AttackResult(
        adversarial=adversarial,
        success=status_out == REACHED,
        steps=steps_out,
        l2=np.sqrt((diff**2).sum(axis=1)),
        stalled=status_out == STALLED,
    )


def _check_clip(clip) -> tuple[float, float]:
    if clip is None:
        return 0.0, 0.0
    if not isinstance(clip, (tuple, list)) or len(clip) != 2:
        raise TypeError(f"clip: expected (low, high) or None, got {clip!r}")
    low = check_float("clip", clip[0])
    high = check_float("clip", clip[1])
    if not low < high:
        raise ValueError(f"clip: needs low < high, got {clip!r}")
    return low, high


def loss_and_gradient(model: keras.Model, x: tf.Tensor, t: tf.Tensor, objective: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Logits at ``x`` and the per-example gradient of the attack loss (to be *descended*)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        if objective == "cross_entropy":
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=logits)
        else:
            loss = -tf.gather(tf.nn.softmax(logits), t, batch_dims=1)
    return logits, tape.gradient(loss, x)


def _compiled(model: keras.Model, objective: str):
    per_model = _COMPILED.setdefault(model, {})
    if objective in per_model:
        return per_model[objective]

    shape = (None, *model.input_shape[1:])

    @tf.function(
        input_signature=[
            tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32),
            tf.TensorSpec([], tf.bool),
        ]
    )
    def run_chunk(x, t, steps, status, n_iter, max_steps, step, low, high, do_clip):
        expand = [-1] + [1] * (len(shape) - 1)
        for _ in tf.range(n_iter):
            running = tf.equal(status, RUNNING)
            if not tf.reduce_any(running):
                break
            logits, grad = loss_and_gradient(model, x, t, objective)
            reached = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), t)
            norm = tf.sqrt(tf.reduce_sum(tf.reshape(tf.square(grad), [tf.shape(grad)[0], -1]), axis=1))
            new_status = tf.where(reached, REACHED, tf.where(steps >= max_steps, OUT_OF_STEPS, tf.where(norm > 0, RUNNING, STALLED)))
            status = tf.where(running, new_status, status)
            move = tf.equal(status, RUNNING)
            direction = grad / tf.reshape(tf.where(norm > 0, norm, 1.0), expand)
            moved = x - step * direction
            moved = tf.where(do_clip, tf.clip_by_value(moved, low, high), moved)
            x = tf.where(tf.reshape(move, expand), moved, x)
            steps = steps + tf.cast(move, tf.int32)
        return x, steps, status

    per_model[objective] = run_chunk
    return run_chunk
