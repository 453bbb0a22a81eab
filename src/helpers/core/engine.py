"""Plumbing shared by every attack engine: per-model compiled functions, the forward pass, model checks.

Each attack family (the paper's attack in :mod:`helpers.attacks.attack`, fixed-budget PGD in :mod:`helpers.attacks.adaptive`,
the timing references of the performance chapter) compiles its loop once per architecture (small models) or per
model (large ones) and keeps it here, under a key of its own (:func:`compiled`); argument checks are written once,
and the L2 geometry every attack shares (norms, steps, projections, distances) is :mod:`helpers.core.contract`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from helpers.core.validate import check_float, check_images, check_int

_ATTRIBUTE = "_helpers_compiled"
SHARED_MAX_PARAMS = 5_000_000  # models up to this size share compiled functions with their architecture's template
_TEMPLATES: dict[str, keras.Model] = {}


def compiled(model: keras.Model, key: Hashable, build: Callable[[keras.Model], Any], *, share: bool = True) -> Any:
    """The compiled function ``build(m)`` made under ``key``, built on first use and reused.

    Tracing costs 0.3-3.5 s per attack and model, and the book attacks well over a hundred models. So a small model
    (at most :data:`SHARED_MAX_PARAMS` weights) is not traced itself: the function is traced once on a *template*,
    a copy of its architecture (same layers, configurations and connections), and every call first copies the
    model's current weights into the template. Same graph, same weights: the same numbers, bit for bit. A large
    model, or one that cannot be copied, or ``share=False`` (the timing references of the performance chapter, which
    must not time the weight copy), gets functions of its own, kept in its own ``__dict__`` (past Keras' attribute
    tracking, so never saved with it; a global table keyed by the model would keep every model ever attacked alive).
    """
    template = shared_template(model) if share else None
    if template is None:
        per_model = model.__dict__.setdefault(_ATTRIBUTE, {})
        if key not in per_model:
            per_model[key] = build(model)
        return per_model[key]
    per_template = template.__dict__.setdefault(_ATTRIBUTE, {})
    if key not in per_template:
        per_template[key] = build(template)
    function = per_template[key]
    load = _loader(template)

    def call(*args, **kwargs):
        load([w.value for w in model.weights])
        return function(*args, **kwargs)

    call.__wrapped__ = function  # the traced function itself (its tracing count, for the tests)
    return call


def loop_body(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled as a function of its own, which a compiled loop *calls* rather than inlines.

    Every attack loop computes its model's logits and input gradient through one of these. The reason is speed,
    not numbers (they are the same bit for bit). TensorFlow's oneDNN graph pass swaps max-pooling's gradient
    (``MaxPoolGrad``) for oneDNN's pooling backward only when it has already swapped the matching forward ``MaxPool``.
    Inside a ``tf.while_loop`` the order in which it visits the nodes changes from one trace to the next, and in
    about one trace in four the gradient stays on TensorFlow's own, slower kernel: that attack then runs 1.4-1.7×
    slower for as long as the trace is used (``ONEDNN_VERBOSE=1`` shows no pooling backward in those traces). A
    function that is not inlined is rewritten as a graph of its own, without a loop, and gets oneDNN's kernel every
    time (measured in the README's performance notes)."""
    return tf.function(fn, experimental_attributes={"_noinline": True})


def forget_compiled(model: keras.Model) -> None:
    """Drop the compiled functions of ``model`` and of its architecture's template: the next attack traces them anew
    (the performance chapter times fresh traces of the same function against each other)."""
    model.__dict__.pop(_ATTRIBUTE, None)
    template = shared_template(model)
    if template is not None:
        template.__dict__.pop(_ATTRIBUTE, None)


def _loader(template: keras.Model) -> Callable[[list], None]:
    """The template's compiled weight copy: one graph call for all its weights, traced once (measured on the small
    CNN: 0.45 ms, against 0.74 ms for its eight weights assigned one by one)."""
    if "_helpers_loader" not in template.__dict__:
        targets = [w.value for w in template.weights]

        @tf.function
        def load(sources):
            for mine, theirs in zip(targets, sources, strict=True):
                mine.assign(theirs)

        template.__dict__["_helpers_loader"] = load
    return template.__dict__["_helpers_loader"]


def architecture_key(model: keras.Model) -> str | None:
    """A string equal for two models exactly when they compute the same function of their weights: the model's
    configuration with every layer name replaced by its position (names differ between copies), and the weight
    shapes. ``None`` when the configuration cannot be read."""
    cached = model.__dict__.get("_helpers_architecture")
    if cached is not None:
        return cached or None
    try:
        names = {model.name: "#model"}
        for i, layer in enumerate(model.layers):
            names[layer.name] = f"#{i}"
            inner = getattr(layer, "inner", None)  # the filter inside a BPDA layer
            if isinstance(inner, keras.layers.Layer):
                names[inner.name] = f"#{i}.inner"

        def anonymous(value):
            if isinstance(value, dict):
                return {k: anonymous(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [anonymous(v) for v in value]
            return names.get(value, value) if isinstance(value, str) else value

        key = json.dumps([anonymous(model.get_config()), [list(w.shape) for w in model.weights]], sort_keys=True, default=str)
    except Exception:  # noqa: BLE001 - a model whose configuration cannot be read is simply not shared
        key = ""
    model.__dict__["_helpers_architecture"] = key
    return key or None


def shared_template(model: keras.Model) -> keras.Model | None:
    """The template of ``model``'s architecture (made on first use), or ``None`` if it is not shared."""
    if not isinstance(model, keras.Model) or model.count_params() > SHARED_MAX_PARAMS:
        return None
    key = architecture_key(model)
    if key is None:
        return None
    if key not in _TEMPLATES:
        try:
            template = keras.models.clone_model(model)
        except Exception:  # noqa: BLE001 - not copyable: the model gets functions of its own
            return None
        if architecture_key(template) != key:
            return None
        _TEMPLATES[key] = template
    return _TEMPLATES[key]


def check_classifier(model: Any) -> int:
    """A Keras model returning one logit per class; returns the number of classes."""
    if not callable(model) or not hasattr(model, "output_shape"):
        raise TypeError(f"model: expected a keras.Model returning logits, got {type(model).__name__}")
    return int(model.output_shape[-1])


def check_model_images(
    model: keras.Model, images: Any, *, name: str = "images", value_range: tuple[float, float] | None = (0.0, 1.0)
) -> np.ndarray:
    """A float32 batch whose image shape is the model's input shape."""
    images = check_images(name, images, value_range=value_range)
    if tuple(images.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(f"{name}: shape {images.shape[1:]} does not match the model input {tuple(model.input_shape[1:])}")
    return images


def predict_logits(model: keras.Model, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """The model's logits on ``images`` in batches of ``batch_size`` (inference mode), as one NumPy array."""
    images = check_images("images", images)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    parts = [np.asarray(model(images[i : i + batch_size], training=False)) for i in range(0, len(images), batch_size)]
    return np.concatenate(parts)


def forward_function(model: keras.Model):
    """The model's compiled inference pass (logits), shared by every caller.

    It is the model's own function, not its architecture's: it is cheap to trace, and the query attacks call it
    thousands of times on small batches, where copying the weights into a template first would cost more than
    the tracing it saves (measured: Square on four models, 27-32 s against 37-38 s)."""

    def build(m):
        spec = tf.TensorSpec((None, *m.input_shape[1:]), tf.float32)
        return tf.function(lambda x: m(x, training=False), input_signature=[spec])

    return compiled(model, "forward", build, share=False)


def check_budgets(budgets) -> np.ndarray:
    """A non-empty list of L2 budgets ε ≥ 0, as float64 (every fixed-budget attack takes one)."""
    if not isinstance(budgets, (list, tuple, np.ndarray)) or len(budgets) == 0:
        raise TypeError(f"budgets: expected a non-empty list of L2 budgets >= 0, got {budgets!r}")
    return np.array([check_float("budgets", e, minimum=0.0) for e in budgets], dtype=np.float64)
