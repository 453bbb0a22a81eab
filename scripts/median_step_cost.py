"""What the median filter adds to one training step of the small CNN: the compare-exchange network against the
earlier ``tf.math.top_k`` median, both as the model's first layer.

    python scripts/median_step_cost.py [--sizes 3 5] [--rounds 40] [--batch-size 64]

Three models per window size — no filter, the top_k median, the network median — are built with
``helpers.training.models.build_model("small_cnn", ...)`` on MNIST digits and trained with ``train_on_batch`` on batches of
64, taking turns step by step so that a change in the machine's load hits them alike. The script prints the median
seconds per step of each and the extra share over no filter ("extra % per training step"); then the same for an
attack step, the loss gradient with respect to the input image, which goes through the filter (a training step
does not differentiate the weightless first layer).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from helpers.bench.filter_costs import _time_turn_by_turn  # noqa: E402
from helpers.defences import filters  # noqa: E402
from helpers.training.data import load_dataset  # noqa: E402
from helpers.training.models import build_model  # noqa: E402


class TopKMedian(keras.layers.Layer):
    """The median as the package computed it before the network: ``top_k`` over the size² shifted views."""

    def __init__(self, size: int = 3, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.size = size

    def call(self, inputs):
        radius, height, width = self.size // 2, inputs.shape[1], inputs.shape[2]
        padded = filters.reflect_pad(inputs, radius)
        shifted = [padded[:, i : i + height, j : j + width, :] for i in range(self.size) for j in range(self.size)]
        middle = self.size * self.size // 2
        return tf.math.top_k(tf.stack(shifted, axis=-1), k=middle + 1, sorted=True).values[..., middle]


def compiled_model(defence: str, *, top_k: bool, num_classes: int) -> keras.Model:
    """The small CNN with ``defence`` as its first layer; ``top_k`` swaps the registry's median layer for
    :class:`TopKMedian` while the model is built."""
    kind = filters.FILTER_KINDS["median"]
    if top_k:
        filters.FILTER_KINDS["median"] = dataclasses.replace(kind, layer=lambda v: TopKMedian(int(v)))
    try:
        model = build_model("small_cnn", input_shape=(28, 28, 1), num_classes=num_classes, defence=defence)
    finally:
        filters.FILTER_KINDS["median"] = kind
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    data = load_dataset("mnist")
    keras.utils.set_random_seed(0)
    starts = np.random.default_rng(0).integers(0, len(data.x_train) - args.batch_size, size=8)
    batches = [(data.x_train[s : s + args.batch_size], data.y_train[s : s + args.batch_size]) for s in starts]
    models = {"none": compiled_model("none", top_k=False, num_classes=10)}
    for size in args.sizes:
        models[f"top_k median {size}x{size}"] = compiled_model(f"median:{size}", top_k=True, num_classes=10)
        models[f"network median {size}x{size}"] = compiled_model(f"median:{size}", top_k=False, num_classes=10)

    def step(model: keras.Model):
        return lambda round_: model.train_on_batch(*batches[round_ % len(batches)])

    def attack_step(model: keras.Model):
        # What an attack step computes: the loss gradient with respect to the input, through the filter.
        @tf.function
        def gradient(x, y):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=False), from_logits=True)
            return tape.gradient(loss, x)

        tensors = [(tf.constant(x), tf.constant(y)) for x, y in batches]
        return lambda round_: gradient(*tensors[round_ % len(tensors)]).numpy()

    for title, make in (("training step (train_on_batch)", step), ("attack step (gradient to the input)", attack_step)):
        times = _time_turn_by_turn({name: make(model) for name, model in models.items()}, rounds=args.rounds)
        base = statistics.median(times["none"])
        print(f"{title}: {args.rounds} interleaved rounds, batch {args.batch_size}")
        print(f"{'model':<24} {'ms/step':>8} {'extra %':>8}")
        for name, values in times.items():
            ms = statistics.median(values)
            print(f"{name:<24} {ms * 1e3:8.2f} {100 * (ms / base - 1):8.1f}")


if __name__ == "__main__":
    main()
