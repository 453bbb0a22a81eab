"""Speed measurements for the performance chapter (``notebooks/07_performance``).

Every comparison runs in one process, on the same model, images and targets. Contenders are timed in
interleaved rounds (A B C, A B C, ...), so that a change in the machine's load hits all of them alike, and
the chapter reports medians. The helpers here measure; they never assert a speed (the tests check behaviour).

* :func:`seed_loop_attack` — the paper's code listing ported to TF2 eager: one image at a time, one
  ``GradientTape`` per step, check the prediction, step, up to ``max_steps``.
* :func:`library_attack` — the same targeted L2 attack with IBM ART (``ProjectedGradientDescentTensorFlowV2``)
  or Foolbox (``L2BasicIterativeAttack``), when they are installed (``requirements-bench.txt``).
* :func:`forward_flops`, :func:`step_seconds`, :func:`matmul_gflops`, :func:`op_time_profile` — achieved
  GFLOP/s of an attack step against the machine's matrix-multiply rate, and where the time goes.
* :func:`training_step_times` — the cost of the filter layers in a training step, against filtering the
  batches with ``scipy.ndimage`` in the input pipeline.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from helpers.attack import OBJECTIVES, OUT_OF_STEPS, REACHED, RUNNING, STALLED, AttackResult, loss_and_gradient
from helpers.train import onednn_enabled
from helpers.validate import check_choice, check_float, check_images, check_int, check_labels

# Distribution names of the attack libraries compared against (pinned in requirements-bench.txt).
LIBRARIES = {"art": "adversarial-robustness-toolbox", "foolbox": "foolbox"}
LIBRARY_LABELS = {"art": "ART PGD-L2", "foolbox": "Foolbox L2-BIM"}


# --- The machine -------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU model, cores this process may use, memory, SIMD extensions, TensorFlow version and the load average."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = float("nan")
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    return {
        "cpu": model,
        "cores": cores,
        "memory_gib": round(memory, 1),
        "simd": simd,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn": onednn_enabled(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or cores,
        "load_average": load_average(),
    }


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), to tell how contended the cores were."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


# --- Timing ------------------------------------------------------------------------------------------------


def interleaved_times(
    contenders: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall-clock seconds of each contender, timed in ``repeats`` interleaved rounds after ``warmup`` untimed calls.

    A call's result is materialised (``.numpy()`` on tensors) before the clock stops.
    """
    repeats = check_int("repeats", repeats, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    if not contenders:
        raise ValueError("contenders: need at least one callable to time")
    for name, fn in contenders.items():
        if not callable(fn):
            raise TypeError(f"contenders: {name!r} is not callable")
        for _ in range(warmup):
            _materialise(fn())
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            _materialise(fn())
            times[name].append(time.perf_counter() - start)
    return times


def timed_call(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall-clock seconds (a run whose result is needed can also be a timing sample)."""
    start = time.perf_counter()
    value = fn()
    _materialise(value)
    return value, time.perf_counter() - start


def _materialise(value: Any) -> None:
    if isinstance(value, (tuple, list)):
        for item in value:
            _materialise(item)
    elif hasattr(value, "numpy"):
        value.numpy()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if len(values) else float("nan")


# --- The workload ------------------------------------------------------------------------------------------


def attack_workload(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, *, n_images: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n_images`` correctly classified images (a seeded random choice, in test-set order) and a seeded
    random wrong target for each — the same recipe as :func:`helpers.evaluate.attack_evaluation`."""
    from helpers.evaluate import predict_logits, random_targets

    n_images = check_int("n_images", n_images, minimum=1)
    logits = predict_logits(model, images)
    labels = check_labels("labels", labels, length=len(logits), num_classes=logits.shape[-1])
    correct = np.flatnonzero(logits.argmax(axis=1) == labels)
    if len(correct) == 0:
        raise ValueError("model: classifies none of the images correctly; nothing to attack")
    chosen = np.sort(np.random.default_rng(seed).permutation(correct)[:n_images])
    return images[chosen], random_targets(labels[chosen], num_classes=logits.shape[-1], seed=seed)


# --- The seed's loop ---------------------------------------------------------------------------------------


def seed_loop_attack(
    model: keras.Model,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    step: float = 0.1,
    max_steps: int = 1000,
    objective: str = "cross_entropy",
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> AttackResult:
    """The paper's listing ported to TF2 eager: per image, per step one ``GradientTape`` evaluation, stop if
    the prediction is the target, else ``x ← x − step·g/‖g‖₂``; at most ``max_steps`` steps.

    Same update, stopping rule and result as :func:`helpers.attack.targeted_attack` (which batches and
    compiles it); the listing itself ascends the target's softmax (``objective="target_probability"``).
    """
    step = check_float("step", step, minimum=0.0, strict_minimum=True)
    max_steps = check_int("max_steps", max_steps, minimum=0)
    objective = check_choice("objective", objective, OBJECTIVES)
    if clip is not None and (len(clip) != 2 or not clip[0] < clip[1]):
        raise ValueError(f"clip: expected (low, high) with low < high, or None; got {clip!r}")
    images = check_images("images", images, value_range=None if clip is None else tuple(clip))
    targets = check_labels("targets", targets, length=len(images), num_classes=int(model.output_shape[-1]))

    n = len(images)
    adversarial = images.copy()
    status = np.full(n, RUNNING, dtype=np.int32)
    steps = np.zeros(n, dtype=np.int32)
    for i in range(n):
        x = tf.constant(images[i : i + 1])
        t = tf.constant(targets[i : i + 1].astype(np.int32))
        for taken in range(max_steps + 1):
            logits, grad = loss_and_gradient(model, x, t, objective)
            if int(tf.argmax(logits[0])) == int(targets[i]):
                status[i] = REACHED
                break
            if taken == max_steps:
                status[i] = OUT_OF_STEPS
                break
            norm = float(tf.norm(grad))
            if norm == 0.0:
                status[i] = STALLED
                break
            x = x - step * (grad / norm)
            if clip is not None:
                x = tf.clip_by_value(x, clip[0], clip[1])
            steps[i] = taken + 1
        adversarial[i] = x.numpy()[0]
    diff = (adversarial.astype(np.float64) - images.astype(np.float64)).reshape(n, -1)
    return AttackResult(
        adversarial=adversarial,
        success=status == REACHED,
        steps=steps,
        l2=np.sqrt((diff**2).sum(axis=1)),
        stalled=status == STALLED,
    )


# --- ART and Foolbox ---------------------------------------------------------------------------------------


def library_versions() -> dict[str, str | None]:
    """Installed version of each compared library (``None``: not installed)."""
    versions = {}
    for name, dist in LIBRARIES.items():
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def library_attack(
    library: str, model: keras.Model, *, step: float = 0.1, batch_size: int = 64
) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
    """A function ``attack(images, targets, steps) -> adversarial`` running ``library``'s targeted L2 attack
    with the paper's update (``x ← clip(x − step·g/‖g‖₂)`` on the cross-entropy to the target, no random start)
    for exactly ``steps`` steps on every image — neither library stops an image early.

    The L2 ball of these projected attacks gets a radius no perturbation in [0, 1] can reach, so that it never
    binds, as in the paper's unbounded attack. Raises ``ImportError`` when the library is not installed.
    """
    library = check_choice("library", library, LIBRARIES)
    step = check_float("step", step, minimum=0.0, strict_minimum=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    shape = tuple(model.input_shape[1:])
    radius = math.sqrt(math.prod(shape)) + 1.0  # larger than any distance between two [0, 1] images
    num_classes = int(model.output_shape[-1])
    if library == "art":
        return _art_attack(model, shape, num_classes, step, batch_size, radius)
    return _foolbox_attack(model, step, batch_size, radius)


def _quiet_import_and_build(build: Callable[[], Any]) -> Any:
    """Run ``build`` with Python warnings and TensorFlow's Python log below errors silenced (the libraries warn
    at import about PyTorch not being installed and about deprecated TensorFlow calls)."""
    import logging
    import warnings

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build()
    finally:
        logger.setLevel(level)


def _art_attack(model, shape, num_classes, step, batch_size, radius):
    def build():
        from art.attacks.evasion import ProjectedGradientDescentTensorFlowV2
        from art.estimators.classification import TensorFlowV2Classifier

        return ProjectedGradientDescentTensorFlowV2, TensorFlowV2Classifier

    ProjectedGradientDescentTensorFlowV2, TensorFlowV2Classifier = _quiet_import_and_build(build)  # noqa: N806

    classifier = TensorFlowV2Classifier(
        model=model, nb_classes=num_classes, input_shape=shape, clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    def attack(images: np.ndarray, targets: np.ndarray, steps: int) -> np.ndarray:
        pgd = ProjectedGradientDescentTensorFlowV2(
            classifier, norm=2, eps=radius, eps_step=step, max_iter=check_int("steps", steps, minimum=1),
            targeted=True, num_random_init=0, batch_size=batch_size, verbose=False,
        )
        return pgd.generate(np.asarray(images, np.float32), y=np.asarray(targets, np.int64))

    return attack


def _foolbox_attack(model, step, batch_size, radius):
    def build():
        import foolbox

        return foolbox, foolbox.TensorFlowModel(model, bounds=(0.0, 1.0))

    foolbox, fmodel = _quiet_import_and_build(build)

    def attack(images: np.ndarray, targets: np.ndarray, steps: int) -> np.ndarray:
        bim = foolbox.attacks.L2BasicIterativeAttack(
            abs_stepsize=step, steps=check_int("steps", steps, minimum=1), random_start=False
        )
        parts = []
        for i in range(0, len(images), batch_size):
            # int64 targets: eagerpy 0.30 breaks on NumPy 2 when the criterion mixes int32 and int64 labels.
            criterion = foolbox.criteria.TargetedMisclassification(tf.constant(targets[i : i + batch_size], tf.int64))
            _, clipped, _ = bim(fmodel, tf.constant(images[i : i + batch_size], tf.float32), criterion, epsilons=radius)
            parts.append(clipped.numpy())
        return np.concatenate(parts)

    return attack


def success_rate(model: keras.Model, adversarial: np.ndarray, targets: np.ndarray, *, batch_size: int = 256) -> float:
    """Share of ``adversarial`` images the model classifies as their target."""
    logits = np.concatenate(
        [np.asarray(model(adversarial[i : i + batch_size], training=False)) for i in range(0, len(adversarial), batch_size)]
    )
    return float((logits.argmax(axis=1) == np.asarray(targets)).mean())


def steps_for_success(
    success_after: Callable[[int], float], *, goal: float, start: int, limit: int, growth: float = 1.25
) -> tuple[int, float, list[tuple[int, float, float]]]:
    """The first step count of ``start, start·growth, …, limit`` whose success rate reaches ``goal``.

    Returns (steps, its success rate, every (steps, rate, wall seconds) tried); if even ``limit`` falls short,
    ``limit``. The last try is a full run at the returned count, so its time is a valid timing sample.
    """
    start = check_int("start", start, minimum=1)
    limit = check_int("limit", max(limit, start), minimum=1)
    growth = check_float("growth", growth, minimum=1.0, strict_minimum=True)
    tried: list[tuple[int, float, float]] = []
    steps = start
    while True:
        began = time.perf_counter()
        rate = float(success_after(steps))
        tried.append((steps, rate, time.perf_counter() - began))
        if rate >= goal - 1e-9 or steps >= limit:
            return steps, rate, tried
        steps = min(limit, max(steps + 1, math.ceil(steps * growth)))


# --- Early stopping ----------------------------------------------------------------------------------------


def early_stopping_costs(steps: np.ndarray, *, batch_size: int, max_steps: int) -> dict[str, int]:
    """Forward+backward evaluations that different stopping rules spend on examples needing ``steps`` steps.

    * ``engine``: every example stops on its own and its slot is refilled at once: Σ (steps + 1);
    * ``whole_batch``: batches of ``batch_size`` run until their slowest example is done;
    * ``slowest``: every example runs as many steps as the slowest one needs (ART, Foolbox at that count);
    * ``max_steps``: every example runs the full budget (the paper's 1000 steps).
    """
    steps = np.asarray(steps, dtype=np.int64)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    max_steps = check_int("max_steps", max_steps, minimum=0)
    batches = [steps[i : i + batch_size] for i in range(0, len(steps), batch_size)]
    return {
        "engine": int((steps + 1).sum()),
        "whole_batch": int(sum(len(b) * (int(b.max()) + 1) for b in batches)),
        "slowest": int(len(steps) * (int(steps.max()) + 1)) if len(steps) else 0,
        "max_steps": int(len(steps) * (max_steps + 1)),
    }


# --- FLOPs and GFLOP/s -------------------------------------------------------------------------------------


def _leaf_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def forward_flops(model: keras.Model, *, dense: bool = True) -> int:
    """Floating-point operations (2 per multiply-add) of one example's forward pass through the Conv2D,
    DepthwiseConv2D and (unless ``dense=False``) Dense layers of ``model`` — the arithmetic that matters; batch
    normalisation, activations, pooling and concatenation only move memory and are not counted."""
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D) + ((keras.layers.Dense,) if dense else ())
    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, kinds):
            kernel = layer.kernel.shape
            positions = math.prod(int(d) for d in layer.output.shape[1:-1])
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                macs = positions * int(layer.output.shape[-1]) * int(kernel[0]) * int(kernel[1])
            else:
                macs = positions * math.prod(int(d) for d in kernel)
            total += 2 * macs
    return total


def attack_step_flops(model: keras.Model) -> int:
    """FLOPs of one attack step per example: the forward pass plus the gradient to the input, which costs as
    much again (each layer's input gradient is a convolution or product of the same size; no weight gradients)."""
    return 2 * forward_flops(model)


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gradient_step(model: keras.Model, *, objective: str = "cross_entropy", jit_compile: bool = False):
    """The attack step as one compiled function ``(x, t) -> gradient`` (no bookkeeping), any batch size.

    Cached per model, so that each model's step is traced once."""
    objective = check_choice("objective", objective, OBJECTIVES)
    per_model = _STEPS.setdefault(model, {})
    if (objective, jit_compile) not in per_model:
        spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32), tf.TensorSpec([None], tf.int32)]

        @tf.function(input_signature=spec, jit_compile=jit_compile)
        def step(x, t):
            return loss_and_gradient(model, x, t, objective)[1]

        per_model[(objective, jit_compile)] = step
    return per_model[(objective, jit_compile)]


def random_batch(model: keras.Model, batch: int, *, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch of uniform [0, 1] images and random targets for ``model`` (speed does not depend on content)."""
    rng = np.random.default_rng(seed)
    shape = (check_int("batch", batch, minimum=1), *model.input_shape[1:])
    targets = rng.integers(0, int(model.output_shape[-1]), size=batch).astype(np.int32)
    return tf.constant(rng.random(shape, dtype=np.float32)), tf.constant(targets)


def step_throughput(
    model: keras.Model, batch_sizes: Sequence[int], *, repeats: int, steps: int = 3, seed: int = 0
) -> dict[int, float]:
    """Attack steps per second (images × steps / s, median) of the compiled step at each batch size."""
    step = gradient_step(model)
    batches = {b: random_batch(model, b, seed=seed) for b in batch_sizes}
    times = interleaved_times(
        {b: (lambda x=x, t=t: [step(x, t) for _ in range(steps)]) for b, (x, t) in batches.items()}, repeats=repeats
    )
    return {b: b * steps / median(times[b]) for b in batch_sizes}


def matmul_function(n: int):
    """A compiled ``n × n`` float32 matrix product and its operands (2·n³ FLOPs per call)."""
    n = check_int("n", n, minimum=1)
    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
    b = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
    product = tf.function(lambda: tf.matmul(a, b))
    return product


def kernel_rates(
    *, image_size: int = 75, batch: int = 32, small_shape: Sequence[int] = (28, 28, 1), small_batch: int = 64,
    matmul_n: int = 2048, repeats: int = 3, inception: keras.Model | None = None, small: keras.Model | None = None,
) -> dict[str, Any]:
    """GFLOP/s of a large ``tf.matmul`` (the machine's rate for dense arithmetic), of an InceptionV3 attack step
    at ``image_size`` px and of a ``small_cnn`` attack step, one call of each per round, ``3·repeats`` rounds.
    Models are built untrained unless given (speed does not depend on the weights)."""
    from helpers.models import build_model

    if inception is None:
        inception = build_model("inception_v3", input_shape=(image_size, image_size, 3), num_classes=3)
    if small is None:
        small = build_model("small_cnn", input_shape=tuple(small_shape), num_classes=10)
    product = matmul_function(matmul_n)
    steps = {"inception_v3": (inception, batch), "small_cnn": (small, small_batch)}
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
    env = os.environ | {"TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.benchmark", json.dumps(kwargs)],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"kernel_rates child failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def op_time_profile(fn: Callable[[], Any], *, calls: int = 2) -> dict[str, float]:
    """Seconds spent per TensorFlow op type (summed over threads) while running ``fn`` ``calls`` times, from
    TensorFlow's profiler trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    _materialise(fn())
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(calls):
                _materialise(fn())
        finally:
            tf.profiler.experimental.stop()
        files = sorted(Path(logdir).rglob("*.xplane.pb"))
        if not files:
            return {}
        space = xplane_pb2.XSpace()
        space.ParseFromString(files[-1].read_bytes())
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


# --- Filters in training -----------------------------------------------------------------------------------


def scipy_filter(spec: str, images: np.ndarray) -> np.ndarray:
    """The defence ``spec`` applied with ``scipy.ndimage`` (mode "reflect", truncate 4), per image and channel."""
    from helpers.filters import Defence

    return Defence.parse(spec).reference(images)


def depthwise_gaussian(sigma: float):
    """The Gaussian blur as TensorFlow's depthwise convolution (reflect-padded, rows then columns) — the
    straightforward way to write :class:`helpers.filters.GaussianBlur`, kept to compare its speed."""
    from helpers.filters import gaussian_kernel1d, reflect_pad

    kernel = gaussian_kernel1d(sigma).astype(np.float32)
    radius = len(kernel) // 2

    @tf.function
    def blur(images):
        channels = images.shape[-1]
        rows = tf.tile(tf.reshape(kernel, (-1, 1, 1, 1)), (1, 1, channels, 1))
        cols = tf.tile(tf.reshape(kernel, (1, -1, 1, 1)), (1, 1, channels, 1))
        out = tf.nn.depthwise_conv2d(reflect_pad(images, radius), rows, strides=(1, 1, 1, 1), padding="VALID")
        return tf.nn.depthwise_conv2d(out, cols, strides=(1, 1, 1, 1), padding="VALID")

    return blur


def training_step_times(
    arch: str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    defences: Sequence[str],
    num_classes: int,
    batch_size: int = 64,
    n_batches: int = 10,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Seconds per training step (``train_on_batch``) of ``arch`` without a filter (``"none"``), with each defence
    as a layer in the model (``"layer <spec>"``), and with the unfiltered model fed batches that ``scipy.ndimage``
    filters in the input pipeline (``"scipy <spec>"``).

    The contenders take turns step by step (``n_batches · repeats`` rounds of one step each), so that a change
    in the machine's load hits them alike; every list holds one time per round."""
    from helpers.models import build_model

    n_batches = check_int("n_batches", n_batches, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    repeats = check_int("repeats", repeats, minimum=1)
    images = check_images("images", images, value_range=None)
    if len(images) < batch_size:
        raise ValueError(f"images: need at least batch_size={batch_size} images, got {len(images)}")
    keras.utils.set_random_seed(seed)
    starts = np.random.default_rng(seed).integers(0, len(images) - batch_size + 1, size=n_batches)
    batches = [(images[s : s + batch_size], labels[s : s + batch_size]) for s in starts]
    turn = {"round": 0}

    def compiled(defence: str) -> keras.Model:
        model = build_model(arch, input_shape=images.shape[1:], num_classes=num_classes, defence=defence)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    def train(model: keras.Model, spec: str | None = None) -> Callable[[], None]:
        def one_step() -> None:
            x, y = batches[turn["round"] % n_batches]
            model.train_on_batch(x if spec is None else scipy_filter(spec, x), y)

        return one_step

    plain = compiled("none")
    contenders: dict[str, Callable[[], None]] = {"none": train(plain)}
    for spec in defences:
        contenders[f"layer {spec}"] = train(compiled(spec))
        contenders[f"scipy {spec}"] = train(plain, spec)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up: trace every train function
        fn()
    for round_ in range(n_batches * repeats):
        turn["round"] = round_
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


# --- The book's own run log --------------------------------------------------------------------------------


def run_log_rows(log: Mapping[str, Any], *, notebooks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows (profile, notebook, seconds, peak MiB) from ``data/results/run_log.json``: the current profile's
    ``notebooks`` and, when the runner keeps them, earlier profiles' under ``by_profile``; only the names in
    ``notebooks`` if given (a log can keep entries of notebooks that were renamed since)."""
    profiles: dict[str, Mapping[str, Any]] = dict(log.get("by_profile", {}))
    if "profile" in log:
        profiles[log["profile"]] = log.get("notebooks", {})
    rows = []
    for profile, entries in profiles.items():
        for name, entry in sorted(entries.items()):
            if notebooks is not None and name not in notebooks:
                continue
            rows.append({"profile": profile, "notebook": name, "seconds": entry.get("seconds"), "peak_mib": entry.get("peak_mib")})
    return rows


# --- Goals -------------------------------------------------------------------------------------------------


def goal_row(name: str, value: float | None, *, at_least: float | None = None, at_most: float | None = None) -> dict[str, Any]:
    """One row of the goals table: the measured value, the goal and whether it is met (``None``: not measured)."""
    if (at_least is None) == (at_most is None):
        raise ValueError("goal_row: give exactly one of at_least and at_most")
    goal = f"≥ {at_least:g}" if at_least is not None else f"≤ {at_most:g}"
    if value is None or not math.isfinite(value):
        return {"goal": name, "target": goal, "measured": None, "met": None}
    met = value >= at_least if at_least is not None else value <= at_most
    return {"goal": name, "target": goal, "measured": float(value), "met": bool(met)}


if __name__ == "__main__":  # used by kernel_rates_in_child: python -m helpers.benchmark '{"batch": 32}'
    print(json.dumps(kernel_rates(**json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}"))))
