"""The logits every attack differentiates, with a faster input gradient for a first convolution that sees one channel.

An attack needs the gradient of its loss with respect to the *image*. For the book's small CNN the slowest part of
that gradient is the first convolution's: a 3×3 convolution from the one grey channel to 32 maps, whose input
gradient oneDNN computes at about 13 GFLOP/s (27 % of the attack step's op time at a batch of 96, measured with
TensorFlow's profiler). The same gradient written as one matrix product (each pixel's 32 upstream values times the
kernel, 9 numbers per pixel) and 9 shifted sums takes about a third of the time, and the whole attack step runs
1.05× (batch 8) to 1.2× (batch 96 and more) faster; the README's performance notes give the measurement.

:func:`attack_logits` is ``model(x, training=False)`` computed layer by layer, with that convolution's input
gradient replaced. The forward pass is the layer's own computation, so the logits are the same bit for bit. The
gradient is the same sum taken in another order: it agrees with TensorFlow's to float32 rounding (relative
differences about 2e-7), so an iterative attack's path can drift apart from the plain model's by rounding only.
Any other model (not a chain of layers, or no such convolution) is simply called.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

_PLAN = "_helpers_first_conv"


def attack_logits(model: keras.Model, x: tf.Tensor) -> tf.Tensor:
    """``model(x, training=False)``; for a chain of layers whose first convolution sees one channel, that
    convolution's input gradient is :func:`_one_channel_conv`'s (same logits, bit for bit)."""
    position = _first_conv_position(model)
    if position is None:
        return model(x, training=False)
    h = x
    for i, layer in enumerate(model.layers[1:], start=1):
        h = _one_channel_conv(layer, h) if i == position else layer(h, training=False)
    return h


def replaced_convolution(model: keras.Model) -> keras.layers.Conv2D | None:
    """The convolution whose input gradient :func:`attack_logits` computes itself, if any."""
    position = _first_conv_position(model)
    return None if position is None else model.layers[position]


def _first_conv_position(model: keras.Model) -> int | None:
    """Index in ``model.layers`` of a first convolution that :func:`_one_channel_conv` can stand in for, if the
    model is a chain (each layer takes the previous layer's output alone), else ``None``. Cached on the model.

    The chain is read from the model's own configuration, not from the layers: a layer shared with another model
    (the straight-through copies of :func:`helpers.attacks.adaptive.bpda_model` share all but one) has a node per
    model, and the same model must get the same answer whether or not its layers are shared."""
    if _PLAN in model.__dict__:
        return model.__dict__[_PLAN]
    position = None
    if _is_chain(model):
        convolutions = [i for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Conv2D)]
        if convolutions and _fits(model.layers[convolutions[0]]):
            position = convolutions[0]
    model.__dict__[_PLAN] = position
    return position


def _is_chain(model: keras.Model) -> bool:
    """Whether ``model`` is an input layer followed by layers each called once on the previous one's output alone."""
    try:
        config = model.get_config()
        names = [layer["name"] for layer in config["layers"]]
        if names != [layer.name for layer in model.layers] or config["output_layers"] not in ([names[-1], 0, 0],
                                                                                               [[names[-1], 0, 0]]):
            return False
        for before, layer in zip(names, config["layers"][1:], strict=False):
            (node,) = layer["inbound_nodes"]
            (tensor,) = node["args"]
            if node.get("kwargs") or tensor["config"]["keras_history"][0] != before:
                return False
        return isinstance(model.layers[0], keras.layers.InputLayer)
    except (AttributeError, KeyError, TypeError, ValueError, NotImplementedError):  # not a functional chain
        return False


def _fits(layer: keras.layers.Layer) -> bool:
    """A plain Conv2D (not a subclass) in float32 from one channel, odd kernel sizes, stride 1, "same" padding (the
    bfloat16 copies of the performance chapter keep TensorFlow's gradient, which accumulates in float32)."""
    kh, kw = layer.kernel_size
    return (type(layer) is keras.layers.Conv2D and layer.compute_dtype == "float32" and layer.kernel.shape[2] == 1
            and layer.data_format == "channels_last" and layer.groups == 1 and layer.padding == "same"
            and tuple(layer.strides) == (1, 1) and tuple(layer.dilation_rate) == (1, 1) and kh % 2 == 1 and kw % 2 == 1)


def _one_channel_conv(layer: keras.layers.Conv2D, x: tf.Tensor) -> tf.Tensor:
    """``layer(x)`` computed as Keras' ``Conv2D.call`` does (cast, convolution, bias, activation), with the
    convolution's input gradient taken as a matrix product and shifted sums (its kernel gradient is TensorFlow's)."""
    dtype = layer.compute_dtype
    kernel = tf.cast(layer.kernel.value, dtype)
    outputs = _convolve(tf.cast(x, dtype), kernel, convolve=layer.convolution_op)
    if layer.use_bias:
        outputs = outputs + tf.reshape(tf.cast(layer.bias.value, dtype), (1, 1, 1, layer.filters))
    return layer.activation(outputs) if layer.activation is not None else outputs


def _convolve(x: tf.Tensor, kernel: tf.Tensor, *, convolve: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> tf.Tensor:
    @tf.custom_gradient
    def forward(x, kernel):
        def backward(upstream):
            return _input_gradient(upstream, kernel), tf.compat.v1.nn.conv2d_backprop_filter(
                x, tf.shape(kernel), upstream, strides=[1, 1, 1, 1], padding="SAME")

        return convolve(x, kernel), backward

    return forward(x, kernel)


def _input_gradient(upstream: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """The gradient of a stride-1 "same" convolution from one channel with respect to its input: each output
    pixel's upstream values times the kernel (one matrix product: ``kh·kw`` numbers per pixel, one plane per tap),
    each plane added back, shifted, onto the input pixels its tap read (``kh·kw`` shifted sums)."""
    kh, kw, _, filters = kernel.shape
    n, h, w = tf.shape(upstream)[0], tf.shape(upstream)[1], tf.shape(upstream)[2]
    taps = tf.reshape(kernel[:, :, 0, :], [kh * kw, filters])  # row i·kw + j: tap (i, j)
    planes = tf.reshape(tf.matmul(taps, tf.reshape(upstream, [-1, filters]), transpose_b=True), [kh * kw, n, h, w])
    # Tap (i, j) of output pixel (a, b) read input pixel (a + i − kh//2, b + j − kw//2): with the planes padded by
    # kh//2 and kw//2, its contribution to input pixel (p, q) sits at (p + kh − 1 − i, q + kw − 1 − j).
    padded = tf.pad(planes, [[0, 0], [0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2]])
    shifted = [padded[i * kw + j, :, kh - 1 - i : kh - 1 - i + h, kw - 1 - j : kw - 1 - j + w]
               for i in range(kh) for j in range(kw)]
    return tf.add_n(shifted)[..., None]
