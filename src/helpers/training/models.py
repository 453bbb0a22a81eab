"""Model builders: a small CNN for MNIST and the paper's three ImageNet architectures.

Every model takes images in [0, 1] and returns logits. The defence layer (if any) and the architecture's
own input preprocessing sit *inside* the model, so training, evaluation and the attacker's gradient all
see the same pipeline, and perturbation norms are always measured in [0, 1] pixel units.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from helpers.core.validate import check_choice, check_int
from helpers.defences.filters import Defence

ARCHITECTURES = ("small_cnn", "inception_v3", "vgg16", "resnet50")
# Smallest input side each Keras application accepts.
MIN_IMAGE_SIZE = {"small_cnn": 8, "inception_v3": 75, "vgg16": 32, "resnet50": 32}
# Keras' file names for the ImageNet weights without the classifier head.
IMAGENET_FILES = {
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
_PREPROCESS_MODE = {"inception_v3": "tf", "vgg16": "caffe", "resnet50": "caffe"}
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# How many of each preprocessing's units one [0, 1] pixel unit is ("tf": [-1, 1]; "caffe": 0–255).
PIXEL_SCALE = {"tf": 2.0, "caffe": 255.0}


def paper_units(arch: str) -> float:
    """Units of ``arch``'s own preprocessed input per [0, 1] pixel unit, with the pretrained weights the paper used
    (so the paper's α = 0.1 in those units is ``0.1 / paper_units(arch)`` pixel units)."""
    return PIXEL_SCALE[_PREPROCESS_MODE[check_choice("arch", arch, ARCHITECTURES[1:])]]


@keras.saving.register_keras_serializable(package="helpers")
class PixelPreprocess(keras.layers.Layer):
    """Map [0, 1] RGB pixels to what a Keras application expects ("tf": [-1, 1]; "caffe": BGR, mean-free, 0-255)."""

    def __init__(self, mode: str = "tf", **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.mode = check_choice("mode", mode, ("tf", "caffe"))

    def call(self, inputs):
        if self.mode == "tf":
            return inputs * 2.0 - 1.0
        scaled = inputs * 255.0
        if inputs.shape[-1] == 3:
            bgr = keras.ops.flip(scaled, axis=-1)
            return bgr - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=inputs.dtype)
        return scaled - sum(_CAFFE_MEAN_BGR) / 3.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def keras_weights_path(arch: str) -> Path:
    """Where Keras looks for an architecture's ImageNet weights (``$KERAS_HOME/models/FILE``)."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return home / "models" / IMAGENET_FILES[arch]


def build_model(
    arch: str,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    defence: str | Defence = "none",
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """Build an (untrained) classifier returning logits, with the defence as its first layer.

    Args:
        arch: ``"small_cnn"``, ``"inception_v3"``, ``"vgg16"`` or ``"resnet50"``.
        input_shape: (height, width, channels) of the [0, 1] input images.
        num_classes: number of output logits.
        defence: ``"none"``, ``"gaussian:SIGMA"`` or ``"median:SIZE"``.
        weights: ``None`` (random), ``"imagenet"`` (file must already be in Keras' cache: nothing is
            downloaded) or a path to a Keras application weights file without the top layers.
    """
    arch, (height, width, channels), num_classes, weights_arg = check_build_args(
        arch, input_shape=input_shape, num_classes=num_classes, defence=defence, weights=weights
    )
    defence = Defence.parse(defence)
    defence_layer = defence.layer()

    inputs = keras.Input(shape=(height, width, channels), name="image")
    x = defence_layer(inputs) if defence_layer is not None else inputs
    if arch == "small_cnn":
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(128, activation="relu")(x)
    else:
        # Pretrained weights need the preprocessing they were trained with; from scratch, [-1, 1] inputs train
        # far better than Caffe's 0-255 BGR (VGG16 without batch normalisation does not learn at all with it).
        mode = _PREPROCESS_MODE[arch] if weights_arg is not None else "tf"
        x = PixelPreprocess(mode, name="preprocess")(x)
        backbone = _backbone(arch, weights_arg, (height, width, channels))
        if arch == "vgg16" and weights_arg is None:
            _he_initialise(backbone)
        if weights_arg is None:
            _fast_batch_statistics(backbone)
        x = backbone(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=f"{arch}_{str(defence).replace(':', '_').replace('.', 'p')}")


def check_build_args(arch, *, input_shape, num_classes, defence, weights):
    """Validate :func:`build_model`'s arguments without building anything; returns them normalised."""
    arch = check_choice("arch", arch, ARCHITECTURES)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"input_shape: expected (height, width, channels), got {input_shape!r}")
    height, width, channels = (check_int("input_shape", d, minimum=1) for d in input_shape)
    minimum = MIN_IMAGE_SIZE[arch]
    if min(height, width) < minimum:
        raise ValueError(f"input_shape: {arch} needs images of at least {minimum}x{minimum} pixels, got {height}x{width}")
    num_classes = check_int("num_classes", num_classes, minimum=2)
    Defence.parse(defence)
    return arch, (height, width, channels), num_classes, _resolve_weights(arch, weights, channels)


def _he_initialise(backbone: keras.Model) -> None:
    """Re-draw conv kernels with He initialisation: VGG16 has no batch normalisation, and with Keras' default
    Glorot initialisation the signal fades over its 13 ReLU layers so that it does not learn from scratch."""
    initializer = keras.initializers.HeNormal()
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(initializer(layer.kernel.shape))


def _fast_batch_statistics(backbone: keras.Model, *, momentum: float = 0.9) -> None:
    """Let batch normalisation's running statistics follow training faster than Keras' default (0.99).

    A CPU budget gives a network trained from scratch only some dozens of steps; with momentum 0.99 the running
    mean and variance used at test time would still be mostly their initial values, so test accuracy would stay
    at chance while training accuracy rises (we measured ResNet50 at 10 % test vs 39 % train after 30 steps).
    """
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def _backbone(arch: str, weights: str | None, input_shape: tuple[int, int, int]) -> keras.Model:
    """The Keras application without its top; a weights file that does not fit fails with one line naming it."""
    try:
        return _application(arch)(include_top=False, weights=weights, input_shape=input_shape, pooling="avg")
    except (ValueError, OSError, KeyError) as error:
        if weights is None:
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"weights: {weights} does not fit {arch} without its top (expected Keras' {IMAGENET_FILES[arch]}); "
            f"loading it said: {first[:160]}"
        ) from None


def _application(arch: str):
    return {
        "inception_v3": keras.applications.InceptionV3,
        "vgg16": keras.applications.VGG16,
        "resnet50": keras.applications.ResNet50,
    }[arch]


def _resolve_weights(arch: str, weights, channels: int) -> str | None:
    if weights is None:
        return None
    if arch == "small_cnn":
        raise ValueError("weights: small_cnn has no pretrained weights; use weights=None")
    if channels != 3:
        raise ValueError(f"weights: pretrained {arch} weights need 3-channel images, got {channels} channel(s)")
    if weights == "imagenet":
        path = keras_weights_path(arch)
        if not path.is_file():
            raise FileNotFoundError(
                f"weights: ImageNet weights for {arch} are not on this machine; put {IMAGENET_FILES[arch]} at {path}"
            )
        return str(path)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights: no weights file at {str(path)!r}")
    return str(path)


# --- A bfloat16 copy for the attack step --------------------------------------------------------------------


def bfloat16_available() -> bool:
    """Whether this CPU computes in bfloat16 natively (AMX or AVX512-BF16, from ``/proc/cpuinfo``); elsewhere
    TensorFlow emulates it, slowly."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def bfloat16_copy(model: keras.Model) -> keras.Model:
    """A copy of ``model`` that computes in bfloat16 (Keras' ``mixed_bfloat16`` policy: float32 weights, products in
    bfloat16 that oneDNN accumulates in float32), with the same weights.

    Its filter layer (the defence) and its last layer stay in float32, so the blur is the defence's own and the logits
    are float32. The attack step through the copy is the book's optional bfloat16 mode (off everywhere by default;
    the performance chapter measures what it gains and changes). ``model`` itself is not touched.

    >>> fast = bfloat16_copy(model)  # doctest: +SKIP
    >>> targeted_attack(fast, x, t)  # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model: expected a Keras model, got {type(model).__name__}")
    from helpers.defences.filters import is_filter_layer

    last = model.layers[-1]

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=clone)
        config = layer.get_config()
        if layer is not last and not is_filter_layer(layer) and not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
