"""The paper's targeted iterative attack, batched and compiled.

For a target class ``t`` the attack repeats ``I ← I − α·g/‖g‖₂`` with ``g = ∇_I L(f(I), t)`` until the
model predicts ``t`` (Jézéquel 2019, section 2). ``L`` is the cross-entropy to the target; the paper's code
listing instead ascends the target's softmax probability (``objective="target_probability"``).

Engine: a working batch runs in one compiled ``tf.function`` (graph mode; XLA is slower on CPU, see the
performance chapter). Each example stops as soon as it reaches its target (it never moves again), runs out of
steps, or has a zero gradient (``stalled``: it could never move again). Inside the compiled loop, after every
step, the examples that finished are recorded and waiting examples take their slots; once nothing waits the
batch shrinks. The loop returns to Python only every ``chunk_steps`` steps (for the progress bar). So the cost is
proportional to the steps each example needs (plus one evaluation to see it has finished), not to the slowest
example of a batch: :func:`run_engine` reports that count next to the evaluations actually computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from helpers.core.contract import l2_distances, l2_norms, normalise
from helpers.core.engine import check_classifier, check_model_images, compiled, loop_body
from helpers.core.first_conv import attack_logits
from helpers.core.validate import check_choice, check_float, check_int, check_labels

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


@dataclass
class EngineStats:
    """What :func:`run_engine` computed: compiled calls, and forward+backward evaluations per example."""

    calls: int  # compiled calls (returns to Python)
    evaluations: int  # per-example forward+backward passes computed (working-batch width x iterations)
    needed: int  # the ones the examples needed: steps + 1 each (the last one sees that it has finished)
    widths: list[int]  # working-batch width of each call

    @property
    def efficiency(self) -> float:
        """``needed / evaluations``: 1.0 means no evaluation was spent on a finished or empty slot."""
        return self.needed / self.evaluations if self.evaluations else 1.0



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
    chunk_steps: int = 32,
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
        batch_size: most examples in the working batch (results do not depend on it beyond float rounding, only
            speed does; on a 2-core CPU the step rate of the small CNN is flat from 64 up, see chapter 07).
        chunk_steps: most steps per compiled call (finished examples are replaced inside the call; between calls
            the progress bar moves).
        progress: show a progress bar of finished examples.

    >>> result = targeted_attack(model, x_test[:10], targets[:10])  # doctest: +SKIP
    >>> result.success.mean(), np.median(result.l2)  # doctest: +SKIP
    """
    result, _ = run_engine(
        model, images, targets, step=step, max_steps=max_steps, objective=objective, clip=clip,
        batch_size=batch_size, chunk_steps=chunk_steps, progress=progress,
    )
    return result


def run_engine(
    model: keras.Model,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    step: float = 0.1,
    max_steps: int = 1000,
    objective: str = "cross_entropy",
    clip: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 256,
    chunk_steps: int = 32,
    progress: bool = True,
) -> tuple[AttackResult, EngineStats]:
    """:func:`targeted_attack` (same arguments), also returning what the engine computed (:class:`EngineStats`)."""
    num_classes = check_classifier(model)
    step = check_float("step", step, minimum=0.0, strict_minimum=True)
    max_steps = check_int("max_steps", max_steps, minimum=0)
    objective = check_choice("objective", objective, OBJECTIVES)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    chunk_steps = check_int("chunk_steps", chunk_steps, minimum=1)
    low, high = _check_clip(clip)
    images = check_model_images(model, images, value_range=None if clip is None else (low, high))
    targets = check_labels("targets", targets, length=len(images), num_classes=num_classes)

    settings = (
        tf.constant(chunk_steps), tf.constant(max_steps), tf.constant(step, tf.float32),
        tf.constant(low, tf.float32), tf.constant(high, tf.float32), tf.constant(clip is not None),
    )
    adversarial, steps_out, status_out, stats = _drive(
        _compiled(model, objective), images, targets, width=min(batch_size, len(images)), settings=settings, progress=progress)
    n = len(images)
    stats.needed = int(steps_out.sum()) + n
    result = AttackResult(
        adversarial=adversarial,
        success=status_out == REACHED,
        steps=steps_out,
        l2=l2_distances(adversarial, images),
        stalled=status_out == STALLED,
    )
    return result, stats


def _drive(run_chunk, images: np.ndarray, targets: np.ndarray, *, width: int, settings: tuple, progress: bool
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, EngineStats]:
    """Run the compiled chunks over a working batch of ``width`` slots (refilled inside the compiled loop from the
    queue of waiting examples); returns the adversarial images, steps, final status of every example, and what was
    computed."""
    n = len(images)
    adversarial = images.copy()
    status_out = np.zeros(n, dtype=np.int32)
    steps_out = np.zeros(n, dtype=np.int32)
    stats = EngineStats(calls=0, evaluations=0, needed=0, widths=[])
    queue_x, queue_t = tf.constant(images), tf.constant(targets.astype(np.int32))
    # The working batch: slot i holds example ``owner[i]``; every slot is running when a call starts.
    state = (queue_x[:width], queue_t[:width], tf.range(width), tf.zeros(width, tf.int32), tf.zeros(width, tf.int32),
             tf.constant(width))
    with tqdm(total=n, desc="attack", unit="img", disable=not progress, leave=False) as bar:
        while int(tf.shape(state[0])[0]):
            *state, done_owner, done_x, done_steps, done_status, widths = run_chunk(*state, queue_x, queue_t, *settings)
            owners = done_owner.numpy()
            adversarial[owners], steps_out[owners], status_out[owners] = done_x.numpy(), done_steps.numpy(), done_status.numpy()
            stats.calls += 1
            stats.widths += widths.numpy().tolist()
            bar.update(len(owners))
    stats.evaluations = int(sum(stats.widths))
    return adversarial, steps_out, status_out, stats


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
        logits = attack_logits(model, x)
        if objective == "cross_entropy":
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=logits)
        else:
            loss = -tf.gather(tf.nn.softmax(logits), t, batch_dims=1)
    return logits, tape.gradient(loss, x)


def _compiled(model: keras.Model, objective: str):
    return compiled(model, ("paper attack, refilled in the loop", objective), lambda m: _build_chunk(m, objective))


def _build_chunk(model: keras.Model, objective: str):
    shape = (None, *model.input_shape[1:])
    expand = [-1] + [1] * (len(shape) - 1)
    batch = [tf.TensorSpec(shape, tf.float32)] + [tf.TensorSpec([None], tf.int32)] * 4 + [tf.TensorSpec([], tf.int32)]
    gradient = loop_body(lambda x, t: loss_and_gradient(model, x, t, objective))

    @tf.function(
        input_signature=[
            *batch, tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32),
            tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.bool),
        ]
    )
    def run_chunk(x, t, owner, steps, status, waiting, queue_x, queue_t, n_iter, max_steps, step, low, high, do_clip):
        """Up to ``n_iter`` steps of the working batch. After each step the examples that finished are recorded,
        waiting examples (``queue_*[waiting:]``) take their slots in slot order, and slots left over leave the batch.
        Returns the new batch state, the finished examples (owner, image, steps, status) and each step's width."""
        total = tf.shape(queue_t)[0]
        done_owner = tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False, element_shape=[None])
        done_x = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False, element_shape=shape)
        done_steps = tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False, element_shape=[None])
        done_status = tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False, element_shape=[None])
        widths = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
        for i in tf.range(n_iter):
            tf.autograph.experimental.set_loop_options(shape_invariants=[
                (x, tf.TensorShape(shape)), (t, tf.TensorShape([None])), (owner, tf.TensorShape([None])),
                (steps, tf.TensorShape([None])), (status, tf.TensorShape([None]))])
            if tf.shape(x)[0] == 0:
                break
            widths = widths.write(i, tf.shape(x)[0])
            logits, grad = gradient(x, t)
            reached = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), t)
            norm = l2_norms(grad)
            status = tf.where(reached, REACHED, tf.where(steps >= max_steps, OUT_OF_STEPS, tf.where(norm > 0, RUNNING, STALLED)))
            move = tf.equal(status, RUNNING)
            direction = normalise(grad, expand, norm=norm)
            moved = x - step * direction
            moved = tf.where(do_clip, tf.clip_by_value(moved, low, high), moved)
            x = tf.where(tf.reshape(move, expand), moved, x)
            steps = steps + tf.cast(move, tf.int32)
            # Record the finished examples, give their slots to waiting ones, drop the slots left over.
            finished = tf.reshape(tf.where(~move), [-1])
            done_owner = done_owner.write(i, tf.gather(owner, finished))
            done_x = done_x.write(i, tf.gather(x, finished))
            done_steps = done_steps.write(i, tf.gather(steps, finished))
            done_status = done_status.write(i, tf.gather(status, finished))
            take = tf.minimum(tf.size(finished), total - waiting)
            slots = tf.reshape(finished[:take], [-1, 1])
            new = tf.range(waiting, waiting + take)
            x = tf.tensor_scatter_nd_update(x, slots, tf.gather(queue_x, new))
            t = tf.tensor_scatter_nd_update(t, slots, tf.gather(queue_t, new))
            owner = tf.tensor_scatter_nd_update(owner, slots, new)
            steps = tf.tensor_scatter_nd_update(steps, slots, tf.zeros_like(new))
            status = tf.tensor_scatter_nd_update(status, slots, tf.fill([take], RUNNING))
            waiting += take
            keep = tf.reshape(tf.where(tf.equal(status, RUNNING)), [-1])
            x, t, owner, steps, status = tf.gather(x, keep), tf.gather(t, keep), tf.gather(owner, keep), tf.gather(steps, keep), tf.gather(status, keep)
        return (x, t, owner, steps, status, waiting, done_owner.concat(), done_x.concat(), done_steps.concat(), done_status.concat(),
                widths.stack())

    return run_chunk
