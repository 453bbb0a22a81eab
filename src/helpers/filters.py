"""The paper's defences as non-trainable Keras layers: Gaussian blur and median filter.

Both behave the same in training and inference, work on any number of channels, and extend the image at
its borders like ``scipy.ndimage`` with ``mode="reflect"`` (edge pixels repeated: ``d c b a | a b c d``).
Because they are layers inside the model, the attacker's gradient goes through them: exactly for the
Gaussian (a linear map), and through the sort for the median (the gradient reaches the median pixel).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from helpers.validate import check_float, check_images, check_int

DEFENCE_KINDS = ("none", "gaussian:SIGMA", "median:SIZE")


def gaussian_kernel1d(sigma: float, *, truncate: float = 4.0) -> np.ndarray:
    """The normalised 1-D kernel that ``scipy.ndimage.gaussian_filter`` uses."""
    sigma = check_float("sigma", sigma, minimum=0.0)
    if sigma == 0.0:
        return np.ones(1, dtype=np.float64)
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def reflect_pad(images: tf.Tensor, pad: int) -> tf.Tensor:
    """Pad H and W by ``pad`` pixels as ``scipy.ndimage`` mode="reflect" does, for any pad size."""
    for axis in (1, 2):
        done = 0
        while done < pad:
            chunk = min(pad - done, images.shape[axis])
            paddings = [[0, 0]] * 4
            paddings[axis] = [chunk, chunk]
            images = tf.pad(images, paddings, mode="SYMMETRIC")
            done += chunk
    return images


def reflect_blur_matrix(kernel1d: np.ndarray, size: int) -> np.ndarray:
    """The ``size x size`` matrix ``M`` with ``x @ M`` = ``x`` correlated with ``kernel1d`` along its last axis,
    extended at the borders like ``scipy.ndimage`` mode="reflect" (also when the kernel is longer than ``size``)."""
    radius = len(kernel1d) // 2
    matrix = np.zeros((size, size), dtype=np.float64)
    for out in range(size):
        for tap, weight in enumerate(kernel1d):
            src = out + tap - radius
            while not 0 <= src < size:
                src = -src - 1 if src < 0 else 2 * size - src - 1
            matrix[src, out] += weight
    return matrix


@keras.saving.register_keras_serializable(package="helpers")
class GaussianBlur(keras.layers.Layer):
    """Blur each channel with a Gaussian of standard deviation ``sigma`` pixels (σ = 0: identity)."""

    def __init__(self, sigma: float = 1.5, *, truncate: float = 4.0, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.sigma = check_float("sigma", sigma, minimum=0.0, maximum=64.0)
        self.truncate = check_float("truncate", truncate, minimum=0.5, maximum=16.0)
        self.kernel1d = gaussian_kernel1d(self.sigma, truncate=self.truncate).astype(np.float32)

    def call(self, inputs):
        if self.sigma == 0.0:
            return inputs
        height, width = inputs.shape[1], inputs.shape[2]
        if height is not None and width is not None:
            # Blurring one axis with mode="reflect" is a product with a fixed n x n matrix. Two matrix products
            # compute the same linear map several times faster on CPU than TensorFlow's depthwise convolution
            # (see the performance chapter), and their gradient is the exact adjoint.
            rows = tf.constant(reflect_blur_matrix(self.kernel1d, height), dtype=inputs.dtype)
            cols = tf.constant(reflect_blur_matrix(self.kernel1d, width), dtype=inputs.dtype)
            return tf.einsum("nhwc,hv->nvwc", tf.einsum("nhwc,wv->nhvc", inputs, cols), rows)
        channels = inputs.shape[-1]
        radius = len(self.kernel1d) // 2
        k = tf.constant(self.kernel1d)
        rows = tf.tile(tf.reshape(k, (-1, 1, 1, 1)), (1, 1, channels, 1))
        cols = tf.tile(tf.reshape(k, (1, -1, 1, 1)), (1, 1, channels, 1))
        padded = reflect_pad(inputs, radius)
        out = tf.nn.depthwise_conv2d(padded, rows, strides=(1, 1, 1, 1), padding="VALID")
        return tf.nn.depthwise_conv2d(out, cols, strides=(1, 1, 1, 1), padding="VALID")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma, "truncate": self.truncate}


@keras.saving.register_keras_serializable(package="helpers")
class MedianFilter(keras.layers.Layer):
    """Replace each pixel by the median of its ``size`` x ``size`` window, per channel (size 1: identity)."""

    def __init__(self, size: int = 3, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.size = check_int("size", size, minimum=1, maximum=31)
        if self.size % 2 == 0:
            raise ValueError(f"size: the median window must be odd (1, 3, 5, ...), got {self.size}")

    def call(self, inputs):
        if self.size == 1:
            return inputs
        radius = self.size // 2
        padded = reflect_pad(inputs, radius)
        height, width = inputs.shape[1], inputs.shape[2]
        # Stack the size*size shifted views on a new last axis, then take the middle of the sorted values.
        shifted = [
            padded[:, i : i + height, j : j + width, :] for i in range(self.size) for j in range(self.size)
        ]
        stack = tf.stack(shifted, axis=-1)
        middle = self.size * self.size // 2
        top = tf.math.top_k(stack, k=middle + 1, sorted=True).values
        return top[..., middle]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def parse_defence(spec: str) -> keras.layers.Layer | None:
    """``"none"`` → None, ``"gaussian:1.5"`` → GaussianBlur(1.5), ``"median:3"`` → MedianFilter(3)."""
    if not isinstance(spec, str):
        raise TypeError(f"defence: expected a string like 'none', 'gaussian:1.5' or 'median:3', got {type(spec).__name__}")
    text = spec.strip().lower()
    if text == "none":
        return None
    kind, _, value = text.partition(":")
    if kind == "gaussian":
        try:
            sigma = float(value)
        except ValueError:
            raise ValueError(f"defence: bad σ in {spec!r}; expected e.g. 'gaussian:1.5'") from None
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"defence: σ must be a finite number >= 0, got {spec!r}")
        return GaussianBlur(sigma)
    if kind == "median":
        try:
            size = int(value)
        except ValueError:
            raise ValueError(f"defence: bad window in {spec!r}; expected an odd integer, e.g. 'median:3'") from None
        if size < 1 or size % 2 == 0:
            raise ValueError(f"defence: the median window must be a positive odd integer, got {spec!r}")
        return MedianFilter(size)
    raise ValueError(f"defence: unknown filter {spec!r}; known: {', '.join(DEFENCE_KINDS)}")


def defence_label(spec: str) -> str:
    """Human-readable name of a defence spec: 'none', 'Gaussian σ=1.5', 'median 3×3'."""
    layer = parse_defence(spec)
    if layer is None:
        return "none"
    if isinstance(layer, GaussianBlur):
        return f"Gaussian σ={layer.sigma:g}"
    return f"median {layer.size}×{layer.size}"


def apply_defence(spec: str, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Apply a defence to a batch of images outside a model (for figures)."""
    layer = parse_defence(spec)
    images = check_images("images", images, value_range=None)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if layer is None:
        return images
    parts = [np.asarray(layer(tf.constant(images[i : i + batch_size]))) for i in range(0, len(images), batch_size)]
    return np.concatenate(parts)


def defence_grid(sigmas, windows) -> list[str]:
    """Defence specs of a study: 'none' for σ = 0, then 'gaussian:σ' for the others, then 'median:s'."""
    specs = ["none" if float(s) == 0 else f"gaussian:{float(s):g}" for s in sigmas]
    specs += [f"median:{int(s)}" for s in windows if int(s) != 1]
    if "none" not in specs:
        specs.insert(0, "none")
    return list(dict.fromkeys(specs))


def defence_parameter(spec: str) -> float:
    """σ of a Gaussian spec, window size of a median spec, 0 for 'none'."""
    layer = parse_defence(spec)
    if layer is None:
        return 0.0
    return float(layer.sigma) if isinstance(layer, GaussianBlur) else float(layer.size)
