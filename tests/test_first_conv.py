"""The attacks' logits with a faster input gradient for a one-channel first convolution: same logits bit for bit, the
same gradients up to float32 rounding, and the plain call for every model it does not fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.attacks.adaptive import bpda_model
from helpers.core.first_conv import _first_conv_position, attack_logits, replaced_convolution
from helpers.training.models import bfloat16_copy, build_model


def _loss_and_gradients(model, logits_of, x, t):
    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = logits_of(model, x)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t, logits=tf.cast(logits, tf.float32)))
        return logits, tape.gradient(loss, [x, *model.trainable_variables])

    return run(x)


def _plain(model, x):
    return model(x, training=False)


def _batch(shape, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.random((n, *shape), dtype=np.float32)), tf.constant(rng.integers(0, 10, n, dtype=np.int32))


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5 * float(np.max(np.abs(np.asarray(b)))) + 1e-12)


@pytest.mark.parametrize("defence", ["none", "gaussian:1.0", "median:3"])
def test_same_logits_and_gradients_as_the_plain_model(defence):
    model = build_model("small_cnn", input_shape=(28, 28, 1), num_classes=10, defence=defence)
    assert _first_conv_position(model) == (1 if defence == "none" else 2)  # after the blur layer, if any
    assert replaced_convolution(model).filters == 32 and replaced_convolution(model).kernel.shape[2] == 1
    x, t = _batch((28, 28, 1))
    logits, grads = _loss_and_gradients(model, attack_logits, x, t)
    plain_logits, plain_grads = _loss_and_gradients(model, _plain, x, t)
    assert np.array_equal(logits.numpy(), plain_logits.numpy())  # the forward pass is the layer's own
    assert len(grads) == len(plain_grads)
    for mine, theirs in zip(grads, plain_grads, strict=True):  # the input's, and every weight's (kernel, bias, ...)
        _close(mine, theirs)


@pytest.mark.parametrize("kernel_size", [(5, 3), (1, 1), (3, 7)])
def test_other_odd_kernels_and_shapes(kernel_size):
    inputs = keras.Input((13, 10, 1))
    h = keras.layers.Conv2D(4, kernel_size, padding="same", activation="tanh")(inputs)
    logits = keras.layers.Dense(10)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, logits)
    assert _first_conv_position(model) == 1
    x, t = _batch((13, 10, 1), n=3, seed=1)
    (logits, grads), (plain_logits, plain_grads) = (_loss_and_gradients(model, f, x, t) for f in (attack_logits, _plain))
    assert np.array_equal(logits.numpy(), plain_logits.numpy())
    for mine, theirs in zip(grads, plain_grads, strict=True):
        _close(mine, theirs)


def test_a_model_sharing_its_layers_is_read_from_its_own_graph():
    """The straight-through copy shares every layer but the filter with its model: still a chain, same position."""
    model = build_model("small_cnn", input_shape=(12, 12, 1), num_classes=10, defence="median:3")
    copy = bpda_model(model)
    assert _first_conv_position(copy) == _first_conv_position(model) == 2
    x, t = _batch((12, 12, 1))
    (logits, grads), (plain_logits, plain_grads) = (_loss_and_gradients(copy, f, x, t) for f in (attack_logits, _plain))
    assert np.array_equal(logits.numpy(), plain_logits.numpy())
    _close(grads[0], plain_grads[0])


def _sequential():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, padding="same"), keras.layers.Flatten(),
                             keras.layers.Dense(10)])


def _branched():
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    b = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Add()([a, b]))))


def _conv(**kwargs):
    channels = kwargs.pop("channels", 1)
    inputs = keras.Input((8, 8, channels))
    h = keras.layers.Conv2D(2, kwargs.pop("kernel_size", 3), **({"padding": "same"} | kwargs))(inputs)
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(h)))


@pytest.mark.parametrize("make", [
    _branched,  # not a chain
    _sequential,  # a chain, but not a functional model: its configuration has no graph to read
    lambda: _conv(channels=3),  # three input channels
    lambda: _conv(strides=2),
    lambda: _conv(padding="valid"),
    lambda: _conv(kernel_size=2),  # even kernel
    lambda: _conv(dilation_rate=2),
], ids=["branched", "sequential", "three-channels", "stride-2", "valid", "even-kernel", "dilated"])
def test_models_it_does_not_fit_are_called_as_they_are(make):
    model = make()
    assert _first_conv_position(model) is None and replaced_convolution(model) is None
    x, t = _batch(model.input_shape[1:], n=2)
    assert np.array_equal(attack_logits(model, x).numpy(), model(x, training=False).numpy())


def test_the_bfloat16_copy_keeps_tensorflows_gradient():
    model = bfloat16_copy(build_model("small_cnn", input_shape=(28, 28, 1), num_classes=10, defence="none"))
    assert _first_conv_position(model) is None
