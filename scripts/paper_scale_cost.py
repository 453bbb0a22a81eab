"""Seconds per image of the paper profile's two heavy stages on this machine, to predict a full run.

    python scripts/paper_scale_cost.py [--arch inception_v3:299 resnet50:224 vgg16:224] [--batch 8] [--rounds 3]

For each architecture at its size: one training step (``train_on_batch``, Adam, cross-entropy; what
``helpers.training.train`` runs) and one attack step (a compiled forward and backward pass to the input image, which is
what each step of ``helpers.attacks.attack.targeted_attack`` computes), on a batch of random [0, 1] images, after one
untimed call each; the two take turns for ``--rounds`` rounds and the median is divided by the batch size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from helpers.training.models import build_model  # noqa: E402


def stage_costs(arch: str, *, size: int, batch: int, rounds: int) -> dict[str, float]:
    """Median seconds per image of a training step and of an attack step of ``arch`` at ``size`` px."""
    model = build_model(arch, input_shape=(size, size, 3), num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = rng.integers(0, 10, size=batch)
    images, targets = tf.constant(x), tf.constant(y)

    @tf.function
    def input_gradient(images, targets):
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = keras.losses.sparse_categorical_crossentropy(targets, model(images, training=False), from_logits=True)
        return tape.gradient(loss, images)

    stages = {"train": lambda: model.train_on_batch(x, y), "attack": lambda: input_gradient(images, targets).numpy()}
    times: dict[str, list[float]] = {name: [] for name in stages}
    for fn in stages.values():
        fn()
    for _ in range(rounds):
        for name, fn in stages.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) / batch for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["inception_v3:299", "resnet50:224", "vgg16:224"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'architecture':<20} {'train s/image':>14} {'attack step s/image':>20}   (batch {args.batch}, median of {args.rounds})")
    for spec in args.arch:
        arch, _, size = spec.partition(":")
        costs = stage_costs(arch, size=int(size), batch=args.batch, rounds=args.rounds)
        print(f"{arch + ' @ ' + size + ' px':<20} {costs['train']:14.3f} {costs['attack']:20.3f}", flush=True)


if __name__ == "__main__":
    main()
