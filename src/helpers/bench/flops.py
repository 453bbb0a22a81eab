"""How close an attack step comes to the hardware: FLOPs counted from layer shapes, the compiled attack step and
its throughput per batch size, the machine's matrix-multiply rate, and TensorFlow's per-op time profile.

:func:`kernel_rates_in_child` runs :func:`kernel_rates` in a fresh process (``python -m helpers.bench.flops``), to
measure with TensorFlow's oneDNN kernels switched the other way.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from helpers.attacks.attack import OBJECTIVES, loss_and_gradient
from helpers.bench.timing import interleaved_times, load_average, materialise, median
from helpers.core.engine import check_classifier, compiled
from helpers.core.validate import check_choice, check_float, check_int
from helpers.training.train import onednn_enabled

# --- FLOPs -------------------------------------------------------------------------------------------------


def _leaf_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def forward_flops(model: keras.Model, *, dense: bool = True) -> int:
    """Floating-point operations (2 per multiply-add) of one example's forward pass through the Conv2D,
    DepthwiseConv2D and (unless ``dense=False``) Dense layers of ``model`` — the arithmetic that matters; batch
    normalisation, activations, pooling and concatenation only move memory and are not counted."""
    check_classifier(model)
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D) + ((keras.layers.Dense,) if dense else ())
    return sum(layer_flops(layer) for layer in _leaf_layers(model) if isinstance(layer, kinds))


def layer_flops(layer: keras.layers.Layer) -> int:
    """Floating-point operations of one example through a Conv2D, DepthwiseConv2D or Dense layer."""
    kernel = layer.kernel.shape
    positions = math.prod(int(d) for d in layer.output.shape[1:-1])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return 2 * positions * int(layer.output.shape[-1]) * int(kernel[0]) * int(kernel[1])
    return 2 * positions * math.prod(int(d) for d in kernel)


def attack_step_flops(model: keras.Model) -> int:
    """FLOPs of one attack step per example: the forward pass plus the gradient to the input, which costs as
    much again (each layer's input gradient is a convolution or product of the same size; no weight gradients)."""
    return 2 * forward_flops(model)


# --- The compiled attack step ------------------------------------------------------------------------------


def gradient_step(model: keras.Model, *, objective: str = "cross_entropy", jit_compile: bool = False):
    """The attack step as one compiled function ``(x, t) -> gradient`` (no bookkeeping), any batch size.

    Kept per model by :func:`helpers.core.engine.compiled`, so that each model's step is traced once."""
    check_classifier(model)
    objective = check_choice("objective", objective, OBJECTIVES)
    if not isinstance(jit_compile, bool):
        raise TypeError(f"jit_compile: expected True or False, got {jit_compile!r}")

    def build(m):
        spec = [tf.TensorSpec((None, *m.input_shape[1:]), tf.float32), tf.TensorSpec([None], tf.int32)]

        @tf.function(input_signature=spec, jit_compile=jit_compile)
        def step(x, t):
            return loss_and_gradient(m, x, t, objective)[1]

        return step

    # Its own function (no template): the timing must not include copying weights into a template.
    return compiled(model, ("gradient step", objective, jit_compile), build, share=False)


def random_batch(model: keras.Model, batch: int, *, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch of uniform [0, 1] images and random targets for ``model`` (speed does not depend on content)."""
    num_classes = check_classifier(model)
    rng = np.random.default_rng(seed)
    shape = (check_int("batch", batch, minimum=1), *model.input_shape[1:])
    targets = rng.integers(0, num_classes, size=batch).astype(np.int32)
    return tf.constant(rng.random(shape, dtype=np.float32)), tf.constant(targets)


def step_throughput(
    model: keras.Model, batch_sizes: Sequence[int], *, repeats: int, steps: int = 3, seed: int = 0
) -> dict[int, float]:
    """Attack steps per second (images × steps / s, median) of the compiled step at each batch size."""
    if not batch_sizes:
        raise ValueError("batch_sizes: need at least one batch size")
    steps = check_int("steps", steps, minimum=1)
    step = gradient_step(model)
    batches = {b: random_batch(model, b, seed=seed) for b in batch_sizes}
    times = interleaved_times(
        {b: (lambda x=x, t=t: [step(x, t) for _ in range(steps)]) for b, (x, t) in batches.items()}, repeats=repeats
    )
    return {b: b * steps / median(times[b]) for b in batch_sizes}


def xla_against_graph(model: keras.Model, *, batch: int = 64, calls: int = 5, repeats: int, seed: int = 0) -> dict[str, Any]:
    """Seconds of ``calls`` attack steps compiled as a TensorFlow graph and with XLA (``jit_compile=True``), in
    interleaved rounds, and the ratio of their medians (``xla_over_graph`` > 1: XLA is slower)."""
    calls = check_int("calls", calls, minimum=1)
    graph_step, xla_step = gradient_step(model), gradient_step(model, jit_compile=True)
    x, t = random_batch(model, batch, seed=seed)
    times = interleaved_times(
        {"graph": lambda: [graph_step(x, t) for _ in range(calls)], "xla": lambda: [xla_step(x, t) for _ in range(calls)]},
        repeats=repeats,
    )
    return {"batch": batch, "graph_seconds": times["graph"], "xla_seconds": times["xla"],
            "xla_over_graph": median(times["xla"]) / median(times["graph"])}


# --- The machine's rate ------------------------------------------------------------------------------------


def matmul_function(n: int) -> Callable[[], tf.Tensor]:
    """A compiled ``n × n`` float32 matrix product of fixed operands (2·n³ FLOPs per call)."""
    n = check_int("n", n, minimum=1)
    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
    b = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
    return tf.function(lambda: tf.matmul(a, b))


def kernel_rates(
    *, image_size: int = 75, batch: int = 32, small_shape: Sequence[int] = (28, 28, 1), small_batch: int = 64,
    matmul_n: int = 2048, repeats: int = 3, inception: keras.Model | None = None, small: keras.Model | None = None,
    paper_inception: keras.Model | None = None, paper_batch: int = 4,
) -> dict[str, Any]:
    """GFLOP/s of a large ``tf.matmul`` (the machine's rate for dense arithmetic), of an InceptionV3 attack step
    at ``image_size`` px and of a ``small_cnn`` attack step, one call of each per round, ``3·repeats`` rounds; with
    ``paper_inception`` also its step on batches of ``paper_batch`` (``"inception_v3_paper"``). Models are built
    untrained unless given (speed does not depend on the weights)."""
    from helpers.training.models import build_model

    repeats = check_int("repeats", repeats, minimum=1)
    if inception is None:
        inception = build_model("inception_v3", input_shape=(image_size, image_size, 3), num_classes=3)
    if small is None:
        small = build_model("small_cnn", input_shape=tuple(small_shape), num_classes=10)
    product = matmul_function(matmul_n)
    steps = {"inception_v3": (inception, batch), "small_cnn": (small, small_batch)}
    if paper_inception is not None:
        steps["inception_v3_paper"] = (paper_inception, check_int("paper_batch", paper_batch, minimum=1))
    calls = {name: (gradient_step(model), *random_batch(model, b)) for name, (model, b) in steps.items()}
    times = interleaved_times(
        {"matmul": product, **{name: (lambda f=f, x=x, t=t: f(x, t)) for name, (f, x, t) in calls.items()}},
        repeats=3 * repeats,
    )
    rates = {"matmul": 2 * matmul_n**3 / median(times["matmul"]) / 1e9}
    for name, (model, b) in steps.items():
        rates[name] = attack_step_flops(model) * b / median(times[name]) / 1e9
    return {"onednn": onednn_enabled(), "gflops": rates, "seconds": times, "load_average": load_average()}


def kernel_rates_in_child(*, onednn: bool, timeout: float = 900, **kwargs: Any) -> dict[str, Any]:
    """:func:`kernel_rates` in a fresh Python process with TensorFlow's oneDNN kernels switched on or off
    (``TF_ENABLE_ONEDNN_OPTS`` is read once, when TensorFlow starts)."""
    if not isinstance(onednn, bool):
        raise TypeError(f"onednn: expected True or False, got {onednn!r}")
    timeout = check_float("timeout", timeout, minimum=0.0, strict_minimum=True)
    env = os.environ | {"TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.bench.flops", json.dumps(kwargs)],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"kernel_rates child failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- Where the time goes -----------------------------------------------------------------------------------


def op_time_profile(fn: Callable[[], Any], *, calls: int = 2) -> dict[str, float]:
    """Seconds spent per TensorFlow op type (summed over threads) per call of ``fn``, averaged over ``calls``
    calls traced by TensorFlow's profiler after one untraced warm-up call."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    calls = check_int("calls", calls, minimum=1)
    materialise(fn())
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(calls):
                materialise(fn())
        finally:
            tf.profiler.experimental.stop()
        files = sorted(Path(logdir).rglob("*.xplane.pb"))
        if not files:
            return {}
        space = xplane_pb2.XSpace()
        space.ParseFromString(files[-1].read_bytes())
    return _op_seconds(space, calls=calls)


def _op_seconds(space: Any, *, calls: int) -> dict[str, float]:
    """Seconds per op type per call from a profiler ``XSpace``: events of the compute threads named
    ``"scope/op_name:OpType"``."""
    seconds: dict[str, float] = {}
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute") and "Inter" not in line.name:
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" in name and "::" not in name:  # "scope/op_name:OpType"
                    op_type = name.rsplit(":", 1)[1]
                    seconds[op_type] = seconds.get(op_type, 0.0) + event.duration_ps * 1e-12 / calls
    return seconds


if __name__ == "__main__":  # used by kernel_rates_in_child: python -m helpers.bench.flops '{"batch": 32}'
    print(json.dumps(kernel_rates(**json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}"))))
