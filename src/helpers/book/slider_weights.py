"""The browser slider's weights files: each grid model's layers exported as exact float32 (byte planes, zlib,
base64) in a script that assigns a global, loaded by the page only when the slider first needs that model."""

from __future__ import annotations

import base64
import json
import os
import zlib
from pathlib import Path
from typing import Any

import keras
import numpy as np

from helpers.book.slider_bundle import ESM_FILE, JS_DIR, LOADER_FILE, bundle_script  # noqa: F401 (part of this module's API)
from helpers.core.validate import check_int
from helpers.defences.filters import is_filter_layer

# The filter kinds src/js/live_slider.js implements (a new kind in helpers.defences.filters needs its JavaScript too),
# with each slider's (min, max, step) and starting value.

ENCODING = "float32-planes-zlib"
WEIGHTS_GLOBAL = "liveSliderWeights"


def encode_parameters(values: np.ndarray, *, bits: int = 32) -> str:
    """Flat float32 parameters → base64 text: each value rounded to its top ``bits`` bits (round to nearest;
    32 keeps them exact), split into four byte planes (highest byte of every value first), zlib-compressed.
    The planes put the sign and exponent bytes together, which compress well; the dropped bits are zeros."""
    bits = check_int("bits", bits, minimum=16, maximum=32)
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    if not np.all(np.isfinite(flat)):
        raise ValueError("values: the parameters contain NaN or infinity")
    words = flat.view(np.uint32).astype(np.uint64)
    drop = 32 - bits
    if drop:
        words = np.minimum(((words + (1 << (drop - 1))) >> drop) << drop, 0xFFFFFFFF)
    planes = np.stack([(words >> shift) & 0xFF for shift in (24, 16, 8, 0)]).astype(np.uint8)
    return base64.b64encode(zlib.compress(planes.tobytes(), 9)).decode("ascii")


def decode_parameters(text: str) -> np.ndarray:
    """Inverse of :func:`encode_parameters` (what the browser does): base64 text → flat float32 array."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected base64 text, got {type(text).__name__}")
    planes = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8).reshape(4, -1).astype(np.uint32)
    return ((planes[0] << 24) | (planes[1] << 16) | (planes[2] << 8) | planes[3]).view(np.float32)


def network_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers the browser runs: everything after the input and the filter, checked to be supported."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model: expected a keras.Model, got {type(model).__name__}")
    layers = [layer for layer in model.layers if not (isinstance(layer, keras.layers.InputLayer) or is_filter_layer(layer))]
    for layer in layers:
        _layer_spec(layer, offset=0)  # raises on anything the browser cannot run
    if not layers or not isinstance(layers[-1], keras.layers.Dense):
        raise ValueError(f"model: {model.name} must end with a Dense layer of logits")
    return layers


def _activation(layer: keras.layers.Layer) -> str:
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name not in ("relu", "linear"):
        raise ValueError(f"model: layer {layer.name} has activation {name!r}; the browser supports relu and linear")
    return name


def _layer_spec(layer: keras.layers.Layer, *, offset: int) -> dict[str, Any]:
    if isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D:
        if layer.padding != "same" or tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1) \
                or layer.data_format != "channels_last" or layer.groups != 1:
            raise ValueError(f"model: conv layer {layer.name} must be 'same', stride 1, channels_last for the browser")
        kind = "conv2d"
    elif isinstance(layer, keras.layers.MaxPooling2D):
        if layer.padding != "valid" or tuple(layer.strides) != tuple(layer.pool_size) or layer.data_format != "channels_last":
            raise ValueError(f"model: pooling layer {layer.name} must be 'valid' with strides = pool size for the browser")
        return {"type": "max_pool", "name": layer.name, "pool_size": list(layer.pool_size)}
    elif isinstance(layer, keras.layers.Flatten):
        return {"type": "flatten", "name": layer.name}
    elif isinstance(layer, keras.layers.Dense):
        kind = "dense"
    else:
        raise ValueError(f"model: layer {layer.name} ({type(layer).__name__}) is not supported by the browser slider")
    spec = {"type": kind, "name": layer.name, "activation": _activation(layer),
            "kernel_shape": list(layer.kernel.shape), "kernel": {"offset": offset, "size": int(np.prod(layer.kernel.shape))}}
    if layer.use_bias:
        spec["bias"] = {"offset": offset + spec["kernel"]["size"], "size": int(np.prod(layer.bias.shape))}
    return spec


def export_network(model: keras.Model, *, bits: int = 32) -> dict[str, Any]:
    """``{"layers": [...], "encoding": ..., "bits": ..., "data": base64}``: what :func:`write_weights_script` stores."""
    specs, arrays, offset = [], [], 0
    for layer in network_layers(model):
        spec = _layer_spec(layer, offset=offset)
        specs.append(spec)
        for name in ("kernel", "bias"):
            if name in spec:
                arrays.append(np.asarray(getattr(layer, name).numpy(), dtype=np.float32).ravel())
                offset += spec[name]["size"]
    flat = np.concatenate(arrays) if arrays else np.zeros(0, np.float32)
    return {"layers": specs, "encoding": ENCODING, "bits": bits, "data": encode_parameters(flat, bits=bits)}


def decode_network(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The layer specs of :func:`export_network` with their ``kernel``/``bias`` arrays decoded (for tests)."""
    if not isinstance(payload, dict) or not {"layers", "encoding", "data"} <= payload.keys():
        raise ValueError("payload: expected the dict returned by export_network (layers, encoding, data)")
    if payload["encoding"] != ENCODING:
        raise ValueError(f"payload: unknown encoding {payload['encoding']!r}; expected {ENCODING!r}")
    flat = decode_parameters(payload["data"])
    layers = []
    for spec in payload["layers"]:
        layer = dict(spec)
        for name in ("kernel", "bias"):
            if name in spec:
                part = flat[spec[name]["offset"] : spec[name]["offset"] + spec[name]["size"]]
                layer[name] = part.reshape(spec["kernel_shape"] if name == "kernel" else -1)
        layers.append(layer)
    return layers


def weights_script(payload: dict[str, Any], *, key: str) -> str:
    """JavaScript that stores ``payload`` as ``window.liveSliderWeights[key]``."""
    if not isinstance(key, str) or not key or not all(c.isalnum() or c in "-_." for c in key):
        raise ValueError(f"key: expected letters, digits, '-', '_' or '.', got {key!r}")
    return (f"(window.{WEIGHTS_GLOBAL} = window.{WEIGHTS_GLOBAL} || {{}})[{json.dumps(key)}] = "
            f"{json.dumps(payload, separators=(',', ':'))};\n")


def write_weights_script(model: keras.Model, *, key: str, directory: str | os.PathLike[str], bits: int = 32) -> Path:
    """Write ``<directory>/<key>.js`` (atomically; kept if it already holds the same content)."""
    text = weights_script(export_network(model, bits=bits), key=key)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.js"
    if path.exists() and path.read_text() == text:
        return path
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
