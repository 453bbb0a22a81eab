"""Training regimes the field trusts, beside the blur: Gaussian noise augmentation (the base classifier of
randomized smoothing, Cohen et al. 2019) and L2 PGD adversarial training (Madry et al. 2018).

A regime is a string, like a defence: ``"standard"``, ``"noise:0.5"`` (every training image gets fresh
N(0, σ²I) noise, not clipped, as the smoothing certificate assumes) or ``"pgd:1.0"`` (every training batch is
replaced by its PGD-L2 adversarial version within ε, made against the current weights).
:func:`helpers.training.train.fit_cached` takes it as ``training=`` and caches the result like any other model.

PGD inside training: ``PGD_STEPS`` steps of length 2.5·ε/``PGD_STEPS`` from the clean image along the
L2-normalised gradient of the cross-entropy, each followed by the projection onto the ball and the pixel range —
the attack of chapter 6's curves, in one compiled training step.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from helpers.core.contract import l2_step
from helpers.core.validate import check_float, check_int

REGIMES = ("standard", "noise", "pgd")
PGD_STEPS = 7  # inner attack steps per training batch (Madry et al. used 7 on CIFAR-10)
PGD_STEP_RATIO = 2.5  # α·steps/ε, as in chapter 6's PGD


def parse_regime(training: str) -> tuple[str, float]:
    """``"standard"`` → ("standard", 0); ``"noise:σ"`` → ("noise", σ > 0); ``"pgd:ε"`` → ("pgd", ε > 0)."""
    if not isinstance(training, str):
        raise TypeError(f"training: expected 'standard', 'noise:SIGMA' or 'pgd:EPSILON', got {training!r}")
    if training == "standard":
        return "standard", 0.0
    kind, _, value = training.partition(":")
    if kind not in REGIMES[1:] or not value:
        raise ValueError(f"training: expected 'standard', 'noise:SIGMA' or 'pgd:EPSILON', got {training!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"training: {value!r} is not a number in {training!r}") from None
    check_float("training", number, minimum=0.0, maximum=16.0, strict_minimum=True)
    return kind, number


def fit_regime(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    training: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    x_check: np.ndarray,
    y_check: np.ndarray,
    verbose=0,
) -> dict[str, list[float]]:
    """Train ``model`` (logits, already built) under a non-standard regime; returns its learning curves
    (``loss``, ``accuracy`` on the training batches as trained, ``val_accuracy`` on clean ``x_check``)."""
    kind, value = parse_regime(training)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if kind == "standard":
        raise ValueError("training: 'standard' training is helpers.training.train's own fit, not a regime")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if kind == "noise":
        # The noise layer is active only in training; the returned model (without it) shares its weights.
        trainer = keras.Sequential([keras.Input(model.input_shape[1:]), keras.layers.GaussianNoise(value, seed=seed), model])
        trainer.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])
        fit = trainer.fit(x_train, y_train, validation_data=(x_check, y_check), epochs=epochs, batch_size=batch_size,
                          shuffle=True, verbose=verbose)
        return {k: [float(v) for v in values] for k, values in fit.history.items()}
    return _adversarial_training(model, x_train, y_train, epsilon=value, epochs=epochs, batch_size=batch_size,
                                 learning_rate=learning_rate, seed=seed, x_check=x_check, y_check=y_check, loss=loss)


def _adversarial_training(model, x_train, y_train, *, epsilon, epochs, batch_size, learning_rate, seed, x_check, y_check, loss):
    optimizer = keras.optimizers.Adam(learning_rate)
    shape = (None, *model.input_shape[1:])
    alpha = PGD_STEP_RATIO * epsilon / PGD_STEPS

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32)])
    def train_step(x, y):
        adversarial = x
        for _ in tf.range(PGD_STEPS):
            with tf.GradientTape() as tape:
                tape.watch(adversarial)
                value = loss(y, model(adversarial, training=False))
            adversarial = l2_step(adversarial, x, tape.gradient(value, adversarial), alpha=alpha, eps=epsilon)
        adversarial = tf.stop_gradient(adversarial)
        with tf.GradientTape() as tape:
            logits = model(adversarial, training=True)
            value = loss(y, logits)
        optimizer.apply(tape.gradient(value, model.trainable_variables), model.trainable_variables)
        right = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y), tf.float32))
        return value * tf.cast(tf.shape(y)[0], tf.float32), right

    rng = np.random.default_rng(seed)
    y_train = np.asarray(y_train, dtype=np.int32)
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_accuracy": []}
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        total = right = 0.0
        for begin in range(0, len(order), batch_size):
            rows = order[begin : begin + batch_size]
            value, hits = train_step(tf.constant(x_train[rows]), tf.constant(y_train[rows]))
            total, right = total + float(value), right + float(hits)
        history["loss"].append(total / len(order))
        history["accuracy"].append(right / len(order))
        predicted = np.concatenate([model(x_check[i : i + 1000], training=False).numpy().argmax(axis=1)
                                    for i in range(0, len(x_check), 1000)])
        history["val_accuracy"].append(float(np.mean(predicted == y_check)))
    return history
