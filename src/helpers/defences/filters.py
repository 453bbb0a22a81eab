"""The paper's defences: a :class:`Defence` value, a registry of filter kinds, and their Keras layers.

A defence is ``Defence(kind, value)``; its public spelling is ``"none"``, ``"gaussian:1.5"`` or ``"median:3"``
(:meth:`Defence.parse` and ``str``). Each filter kind (:data:`FILTER_KINDS`) knows its parameter, label, Keras
layer and ``scipy.ndimage`` reference, so code iterates the registry and never spells a kind or splits a string.

Both behave the same in training and inference, work on any number of channels, and extend the image at
its borders like ``scipy.ndimage`` with ``mode="reflect"`` (edge pixels repeated: ``d c b a | a b c d``).
Because they are layers inside the model, the attacker's gradient goes through them: exactly for the
Gaussian (a linear map), and through the median's min/max network (the gradient reaches the selected pixel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from helpers.core.validate import check_float, check_images, check_int


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
            # Columns first, as one (n·h·c) x w by w x w product; then rows, one h x h matrix times each image's
            # h x (c·w) block. Two einsums give bitwise the same numbers but take 3-4x as long (their own transposes).
            rows = tf.constant(reflect_blur_matrix(self.kernel1d, height).T, dtype=inputs.dtype)
            cols = tf.constant(reflect_blur_matrix(self.kernel1d, width), dtype=inputs.dtype)
            channels = inputs.shape[-1]
            by_column = tf.reshape(tf.transpose(inputs, [0, 1, 3, 2]), [-1, width])  # [n·h·c, w]
            blurred = tf.matmul(rows, tf.reshape(tf.matmul(by_column, cols), [-1, height, channels * width]))
            return tf.transpose(tf.reshape(blurred, [-1, height, channels, width]), [0, 1, 3, 2])
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


# The median of 9 as Devillard's opt_med9 (after A. W. Paeth, Graphics Gems, 1990): 19 compare-exchanges
# (a, b) that leave the smaller value in wire a and the larger in wire b; wire 4 ends as the median. Its first
# nine sort the triples (0, 1, 2), (3, 4, 5) and (6, 7, 8), each with (1, 2), (0, 1), (1, 2).
OPT_MED9 = (
    (1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8),
    (0, 3), (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2),
)
Network = list[tuple[int, int, bool, bool]]


def merge_exchange_network(n: int) -> list[tuple[int, int]]:
    """Batcher's merge-exchange sorting network on ``n`` wires (Knuth, TAOCP vol. 3, 5.2.2 Algorithm M): a list
    of compare-exchanges ``(a, b)``, ``a < b``, after which the wires hold the values in ascending order."""
    n = check_int("n", n, minimum=1)
    pairs: list[tuple[int, int]] = []
    t = max(1, (n - 1).bit_length())
    p = 1 << (t - 1)
    while p > 0:
        q, r, d = 1 << (t - 1), 0, p
        while True:
            pairs.extend((i, i + d) for i in range(n - d) if i & p == r)
            if q == p:
                break
            d, q, r = q - p, q // 2, p
        p //= 2
    return pairs


def prune_network(pairs: Iterable[tuple[int, int]], *, output: int) -> Network:
    """The compare-exchanges that wire ``output`` depends on, each as ``(a, b, need_min, need_max)``: a
    comparator none of whose results is read later is dropped, and of the others only the read results are kept."""
    needed = {check_int("output", output, minimum=0)}
    kept = []
    for a, b in reversed(list(pairs)):
        if a in needed or b in needed:
            kept.append((a, b, a in needed, b in needed))
            needed |= {a, b}
    return kept[::-1]


def median_network(size: int) -> tuple[bool, Network]:
    """The median's selection network for an odd ``size`` x ``size`` window (``size`` ≥ 3), and whether its wires
    are the window's columns sorted beforehand (wire ``size·c + r`` = the ``r``-th smallest of column ``c``).

    3 x 3: opt_med9 without its first nine comparators, which sort the columns; sorting the columns once per
    image column serves the three windows that share it. Larger windows: Batcher's merge-exchange network on
    the ``size²`` values, pruned to the middle wire."""
    size = check_int("size", size, minimum=3)
    if size % 2 == 0:
        raise ValueError(f"size: the median window must be odd (3, 5, 7, ...), got {size}")
    if size == 3:
        return True, prune_network(OPT_MED9[9:], output=4)
    return False, prune_network(merge_exchange_network(size * size), output=size * size // 2)


def compare_exchange(wires: Sequence, network: Network) -> list:
    """Run a (pruned) network on a list of tensors. ``tf.minimum`` and ``tf.maximum`` pass the gradient to one
    argument each (to the first on ties), so each result's gradient reaches exactly one input."""
    wires = list(wires)
    for a, b, need_min, need_max in network:
        low = tf.minimum(wires[a], wires[b]) if need_min else None
        high = tf.maximum(wires[a], wires[b]) if need_max else None
        if need_min:
            wires[a] = low
        if need_max:
            wires[b] = high
    return wires


@keras.saving.register_keras_serializable(package="helpers")
class MedianFilter(keras.layers.Layer):
    """Replace each pixel by the median of its ``size`` x ``size`` window, per channel (size 1: identity).

    The median is a fixed compare-exchange (min/max) network over the window's shifted views
    (:func:`median_network`), so it selects exactly the value ``scipy.ndimage.median_filter`` returns, and each
    output's gradient reaches exactly one pixel of its window (the one selected)."""

    def __init__(self, size: int = 3, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.size = check_int("size", size, minimum=1, maximum=31)
        if self.size % 2 == 0:
            raise ValueError(f"size: the median window must be odd (1, 3, 5, ...), got {self.size}")
        self.sorted_columns, self.network = median_network(self.size) if self.size > 1 else (False, [])

    def call(self, inputs):
        if self.size == 1:
            return inputs
        size = self.size
        padded = reflect_pad(inputs, size // 2)
        height, width = inputs.shape[1], inputs.shape[2]
        # The window's column c, row r is rows[r][:, :, c : c + width] (rows: the padded image shifted down by r).
        rows = [padded[:, r : r + height, :, :] for r in range(size)]
        if self.sorted_columns:
            rows = compare_exchange(rows, [(a, b, True, True) for a, b in OPT_MED9[:9:3]])
        wires = [row[:, :, c : c + width, :] for c in range(size) for row in rows]
        return compare_exchange(wires, self.network)[size * size // 2]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size}


# --------------------------------------------------------------------------------------------------------------
# The registry of filter kinds
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterKind:
    """One family of filters, e.g. the Gaussian (parameter σ) or the median (window s).

    ``check`` validates a parameter value and returns it as a float (raising a one-line error that names
    ``defence``); ``identity`` is the value that leaves images unchanged (it is spelled ``"none"``).
    """

    name: str  # the spelling before the colon: "gaussian"
    title: str  # "Gaussian"
    symbol: str  # the slider's symbol: "σ"
    parameter_name: str  # a column name for the parameter: "sigma"
    identity: float  # the parameter value that is no filter
    check: Callable[[float], float]
    format: Callable[[float], str]  # the parameter as spelled in "kind:VALUE"
    label: Callable[[float], str]  # "Gaussian σ=1.5"
    layer: Callable[[float], keras.layers.Layer]
    layer_class: type
    layer_value: Callable[[keras.layers.Layer], float]  # the parameter of a layer of this kind
    reference: Callable[[np.ndarray, float], np.ndarray]  # scipy.ndimage on an NHWC batch
    linear: bool  # a linear filter's gradient is exact and informative; BPDA matters for the others
    slider_step: float  # the step of a live slider over the parameter (an integer step gives an integer slider)


FILTER_KINDS: dict[str, FilterKind] = {}


def register_filter_kind(kind: FilterKind) -> FilterKind:
    """Add a filter kind to the registry (its name must be new)."""
    if not isinstance(kind, FilterKind):
        raise TypeError(f"kind: expected a FilterKind, got {type(kind).__name__}")
    if kind.name in FILTER_KINDS or kind.name == "none" or not kind.name.isidentifier():
        raise ValueError(f"kind: the name {kind.name!r} is taken or not an identifier")
    FILTER_KINDS[kind.name] = kind
    return kind


def _check_sigma(value: float) -> float:
    value = check_float("defence", value)
    if value < 0 or value > 64:
        raise ValueError(f"defence: σ must be a finite number in [0, 64], got {value:g}")
    return value


def _check_window(value: float) -> float:
    if isinstance(value, bool) or float(value) != int(float(value)) or int(float(value)) < 1 or int(float(value)) % 2 == 0:
        raise ValueError(f"defence: the median window must be a positive odd integer, got {value!r}")
    if int(float(value)) > 31:
        raise ValueError(f"defence: the median window must be at most 31, got {int(float(value))}")
    return float(int(float(value)))


def _scipy_gaussian(images: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(images, sigma=(0, sigma, sigma, 0), mode="reflect", truncate=4.0)


def _scipy_median(images: np.ndarray, size: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.median_filter(images, size=(1, int(size), int(size), 1), mode="reflect")


register_filter_kind(FilterKind(
    name="gaussian", title="Gaussian", symbol="σ", parameter_name="sigma", identity=0.0, check=_check_sigma,
    format=lambda v: f"{v:g}", label=lambda v: f"Gaussian σ={v:g}", layer=GaussianBlur, layer_class=GaussianBlur,
    layer_value=lambda layer: float(layer.sigma), reference=_scipy_gaussian, linear=True, slider_step=0.1,
))
register_filter_kind(FilterKind(
    name="median", title="median", symbol="s", parameter_name="window", identity=1.0, check=_check_window,
    format=lambda v: f"{int(v)}", label=lambda v: f"median {int(v)}×{int(v)}", layer=lambda v: MedianFilter(int(v)),
    layer_class=MedianFilter, layer_value=lambda layer: float(layer.size), reference=_scipy_median, linear=False,
    slider_step=2,
))


def filter_kind(name: str) -> FilterKind:
    """The registered kind called ``name`` (one-line error listing the known ones)."""
    if not isinstance(name, str) or name not in FILTER_KINDS:
        raise ValueError(f"kind: unknown filter kind {name!r}; known: {', '.join(FILTER_KINDS)}")
    return FILTER_KINDS[name]


# --------------------------------------------------------------------------------------------------------------
# A defence
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Defence:
    """A defence: no filter (``kind="none"``) or a registered filter kind with its parameter.

    >>> Defence.parse("gaussian:1.5").label  # doctest: +SKIP
    'Gaussian σ=1.5'
    """

    kind: str
    value: float = 0.0

    @staticmethod
    def parse(spec: str | Defence) -> Defence:
        """``"none"``, ``"gaussian:1.5"``, ``"median:3"`` (or a Defence, returned as is)."""
        if isinstance(spec, Defence):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"defence: expected a string like {_examples()}, got {type(spec).__name__}")
        text = spec.strip().lower()
        if text == "none":
            return NONE
        name, colon, value = text.partition(":")
        if name not in FILTER_KINDS or not colon:
            raise ValueError(f"defence: unknown filter {spec!r}; known: none, {', '.join(k + ':VALUE' for k in FILTER_KINDS)}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"defence: bad {FILTER_KINDS[name].symbol} in {spec!r}; expected e.g. {_examples()}") from None
        return Defence.of(name, number)

    @staticmethod
    def of(kind: str, value: float) -> Defence:
        """The filter ``kind`` with parameter ``value`` (its identity value gives :data:`NONE`)."""
        spec = filter_kind(kind)
        number = spec.check(value)
        return NONE if number == spec.identity else Defence(kind, number)

    def __post_init__(self) -> None:
        if self.kind != "none" and self.kind not in FILTER_KINDS:
            raise ValueError(f"defence: unknown filter kind {self.kind!r}; known: none, {', '.join(FILTER_KINDS)}")

    def __str__(self) -> str:
        return "none" if self.is_none else f"{self.kind}:{FILTER_KINDS[self.kind].format(self.value)}"

    @property
    def is_none(self) -> bool:
        return self.kind == "none"

    @property
    def label(self) -> str:
        """Human-readable name: 'none', 'Gaussian σ=1.5', 'median 3×3'."""
        return "none" if self.is_none else FILTER_KINDS[self.kind].label(self.value)

    @property
    def parameter(self) -> float:
        """σ of a Gaussian, the window of a median, 0 for no filter."""
        return 0.0 if self.is_none else float(self.value)

    def slider_value(self, kind: str) -> float:
        """The parameter on a slider of filter ``kind``: no filter sits at that kind's identity value."""
        spec = filter_kind(kind)
        if self.is_none:
            return spec.identity
        if self.kind != kind:
            raise ValueError(f"defence: {self} is not a {kind} filter")
        return float(self.value)

    def layer(self) -> keras.layers.Layer | None:
        """A new Keras layer of this filter (``None`` for no filter)."""
        return None if self.is_none else FILTER_KINDS[self.kind].layer(self.value)

    def reference(self, images: np.ndarray) -> np.ndarray:
        """This filter applied with ``scipy.ndimage`` (mode "reflect") to an NHWC batch."""
        return images if self.is_none else FILTER_KINDS[self.kind].reference(images, self.value)

    def apply(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """This filter's Keras layer applied to a batch outside a model (for figures and training data)."""
        images = check_images("images", images, value_range=None)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        layer = self.layer()
        if layer is None:
            return images
        parts = [np.asarray(layer(tf.constant(images[i : i + batch_size]))) for i in range(0, len(images), batch_size)]
        return np.concatenate(parts)


NONE = Defence("none", 0.0)


def _examples() -> str:
    return ", ".join(["'none'", *(f"'{name}:VALUE'" for name in FILTER_KINDS)])


def filter_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of ``model`` that are registered filters."""
    classes = tuple(kind.layer_class for kind in FILTER_KINDS.values())
    return [layer for layer in model.layers if isinstance(layer, classes)]


def is_filter_layer(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, tuple(kind.layer_class for kind in FILTER_KINDS.values()))


def model_defence(model: keras.Model) -> Defence:
    """The defence a model applies: its (single) filter layer read back through the registry."""
    layers = filter_layers(model)
    if not layers:
        return NONE
    for name, kind in FILTER_KINDS.items():
        if isinstance(layers[0], kind.layer_class):
            return Defence.of(name, kind.layer_value(layers[0]))
    raise AssertionError("unreachable: filter_layers only returns registered layers")


def study_grid(values: Mapping[str, Iterable[float]]) -> list[Defence]:
    """The defences of a study: ``none`` first, then each kind's values in order (identity values are ``none``).

    >>> [str(d) for d in study_grid({"gaussian": [0, 1.5], "median": [3]})]  # doctest: +SKIP
    ['none', 'gaussian:1.5', 'median:3']
    """
    grid = [Defence.of(kind, v) for kind, kind_values in values.items() for v in kind_values]
    return list(dict.fromkeys([NONE, *grid]))
