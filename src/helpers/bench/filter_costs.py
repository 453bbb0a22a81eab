"""What the paper's defence costs in training: a training step without a filter, with the filter as a layer in
the model, and with the batches filtered by ``scipy.ndimage`` in the input pipeline; and the Gaussian layer's
matrix-product blur against TensorFlow's depthwise convolution computing the same blur.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from helpers.bench.timing import interleaved_times
from helpers.core.validate import check_float, check_images, check_int, check_labels
from helpers.defences.filters import Defence, GaussianBlur, gaussian_kernel1d, reflect_pad

Batches = list[tuple[np.ndarray, np.ndarray]]


def depthwise_gaussian(sigma: float) -> Callable[[tf.Tensor], tf.Tensor]:
    """The Gaussian blur as TensorFlow's depthwise convolution (reflect-padded, rows then columns) — the
    straightforward way to write :class:`helpers.defences.filters.GaussianBlur`, kept to compare its speed."""
    sigma = check_float("sigma", sigma, minimum=0.0, strict_minimum=True)
    kernel = gaussian_kernel1d(sigma).astype(np.float32)
    radius = len(kernel) // 2

    @tf.function
    def blur(images):
        channels = images.shape[-1]
        rows = tf.tile(tf.reshape(kernel, (-1, 1, 1, 1)), (1, 1, channels, 1))
        cols = tf.tile(tf.reshape(kernel, (1, -1, 1, 1)), (1, 1, channels, 1))
        out = tf.nn.depthwise_conv2d(reflect_pad(images, radius), rows, strides=(1, 1, 1, 1), padding="VALID")
        return tf.nn.depthwise_conv2d(out, cols, strides=(1, 1, 1, 1), padding="VALID")

    return blur


def gaussian_blur_times(images: np.ndarray, *, sigma: float, calls: int = 5, repeats: int) -> dict[str, list[float]]:
    """Seconds of ``calls`` blurs of ``images`` by the Gaussian layer's matrix products (``"matrix"``) and by
    :func:`depthwise_gaussian` (``"depthwise"``), both compiled, timed in interleaved rounds."""
    calls = check_int("calls", calls, minimum=1)
    batch = tf.constant(check_images("images", images, value_range=None))
    matrix_blur, depthwise_blur = tf.function(GaussianBlur(sigma).call), depthwise_gaussian(sigma)
    return interleaved_times(
        {"matrix": lambda: [matrix_blur(batch) for _ in range(calls)],
         "depthwise": lambda: [depthwise_blur(batch) for _ in range(calls)]},
        repeats=repeats,
    )


def training_step_times(
    arch: str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    defences: Sequence[str],
    num_classes: int,
    batch_size: int = 64,
    n_batches: int = 10,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Seconds per training step (``train_on_batch``) of ``arch`` without a filter (``"none"``), with each defence
    as a layer in the model (``"layer <spec>"``), and with the unfiltered model fed batches that ``scipy.ndimage``
    filters in the input pipeline (``"scipy <spec>"``).

    The contenders take turns step by step (``n_batches · repeats`` rounds of one step each, in a rotating order),
    so that a change in the machine's load hits them alike; every list holds one time per round."""
    n_batches = check_int("n_batches", n_batches, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    repeats = check_int("repeats", repeats, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    images = check_images("images", images, value_range=None)
    labels = check_labels("labels", labels, length=len(images), num_classes=num_classes)
    if isinstance(defences, str):
        raise TypeError(f"defences: expected a list of defence specs, got the string {defences!r}")
    parsed = {spec: Defence.parse(spec) for spec in defences}
    if len(images) < batch_size:
        raise ValueError(f"images: need at least batch_size={batch_size} images, got {len(images)}")
    keras.utils.set_random_seed(seed)
    starts = np.random.default_rng(seed).integers(0, len(images) - batch_size + 1, size=n_batches)
    batches = [(images[s : s + batch_size], labels[s : s + batch_size]) for s in starts]
    contenders = _training_contenders(arch, batches, parsed, input_shape=images.shape[1:], num_classes=num_classes)
    return _time_turn_by_turn(contenders, rounds=n_batches * repeats)


def _training_contenders(
    arch: str, batches: Batches, defences: dict[str, Defence], *, input_shape: tuple[int, ...], num_classes: int
) -> dict[str, Callable[[int], None]]:
    """One training step per contender, ``step(round)`` training on batch ``round mod len(batches)``; the models
    are built in a fixed order (no filter first), so that seeded weights are the same from run to run."""
    from helpers.training.models import build_model

    def compiled(defence: Defence | str) -> keras.Model:
        model = build_model(arch, input_shape=input_shape, num_classes=num_classes, defence=defence)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    def train(model: keras.Model, defence: Defence | None = None) -> Callable[[int], None]:
        def one_step(round_: int) -> None:
            x, y = batches[round_ % len(batches)]
            model.train_on_batch(x if defence is None else defence.reference(x), y)

        return one_step

    plain = compiled("none")
    contenders: dict[str, Callable[[int], None]] = {"none": train(plain)}
    for spec, defence in defences.items():
        contenders[f"layer {spec}"] = train(compiled(defence))
        contenders[f"scipy {spec}"] = train(plain, defence)
    return contenders


def _time_turn_by_turn(contenders: dict[str, Callable[[int], None]], *, rounds: int) -> dict[str, list[float]]:
    """One untimed call of each contender on round 0 (tracing), then ``rounds`` rounds in which each takes one
    timed turn. The turns rotate: round r starts with contender r mod n, so that no contender always runs right
    after the same other one (in a fixed order, the step right after the unfiltered one measured about a point
    slower)."""
    for fn in contenders.values():
        fn(0)
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        first = round_ % len(names)
        for name in names[first:] + names[:first]:
            start = time.perf_counter()
            contenders[name](round_)
            times[name].append(time.perf_counter() - start)
    return times
