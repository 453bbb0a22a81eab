"""Training with a verified on-disk cache.

A trained model is stored as ``<cache_dir>/<key>.keras`` plus ``<key>.json`` (the arguments, package
versions, learning curves and the SHA-256 of the ``.keras`` file). The key hashes everything that affects
the weights, so a second call with the same arguments loads the file instead of training. Files are
written to a temporary name and renamed, and the JSON is written last: a run killed mid-training leaves
nothing that a later run would trust. A file whose hash does not match, or that fails to load, is rebuilt
with a warning. Two processes that need the same model take turns on a lock beside it: one trains, the other loads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from helpers.core import paths
from helpers.core.io import file_sha256, package_versions, read_json, write_json
from helpers.core.validate import check_choice, check_int
from helpers.defences.filters import Defence, filter_layers
from helpers.defences.robust_training import fit_regime, parse_regime
from helpers.training.data import Dataset
from helpers.training.models import ARCHITECTURES, build_model, check_build_args

# Learning rates: Adam's default for the networks with batch normalisation; VGG16 (none) needs a smaller one.
LEARNING_RATE = {"small_cnn": 1e-3, "inception_v3": 1e-3, "vgg16": 1e-4, "resnet50": 1e-3}
CACHE_FORMAT = 3  # 2: batch-normalisation momentum 0.9 from scratch; 3: filter applied to the data once


@dataclass
class TrainedModel:
    model: keras.Model
    history: dict[str, list[float]]
    path: Path
    from_cache: bool
    seconds: float


def train_seconds(trained: TrainedModel, *, cpu: bool = False) -> float:
    """The seconds the model took to train when it was trained, as recorded beside the cached file (``seconds``
    is the load time when it came from the cache). ``cpu=True``: the CPU seconds of the process (all its threads)
    instead of wall seconds, which another program running at the same time changes far less; NaN for a cache
    entry written before they were recorded."""
    if not trained.from_cache and not cpu:
        return trained.seconds
    return float(read_json(trained.path.with_suffix(".json")).get("train_cpu_seconds" if cpu else "train_seconds", float("nan")))


def onednn_enabled() -> bool | None:
    """Whether TensorFlow's oneDNN CPU kernels are on (``TF_ENABLE_ONEDNN_OPTS``; by default TensorFlow turns
    them on only for CPUs with AVX-512 VNNI/BF16 or AMX). ``None`` if this TensorFlow cannot tell."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # pragma: no cover - depends on the TensorFlow build
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


@contextlib.contextmanager
def deterministic(seed: int):
    """Seed Python, NumPy and TensorFlow, and ask TensorFlow for deterministic kernels while the block runs.

    The kernels are switched back afterwards. Left on, they would make every later attack in the process take
    other kernels than in a process that found its model in the cache: the same attack on the same weights then
    differed in the last digits (up to 0.01 in a pixel of an adversarial digit), and ran about 1.5 times as long.
    """
    # TensorFlow exports only the switch that turns them on; its config module holds the query and the other switch.
    from tensorflow.python.framework import config as tf_config

    keras.utils.set_random_seed(seed)
    was_on = tf_config.is_op_determinism_enabled()
    tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if not was_on:
            tf_config.disable_op_determinism()


def cache_key(arch: str, dataset: Dataset, *, defence: str | Defence, epochs: int, batch_size: int, seed: int, weights=None,
              training: str = "standard") -> dict:
    """Everything that affects the trained weights (a non-standard training regime adds its own entry, so that the
    keys, and the files, of standard models stay what they were)."""
    key = {
        "format": CACHE_FORMAT,
        "arch": arch,
        "dataset": dataset.name,
        "data_fingerprint": dataset.fingerprint,
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "defence": str(Defence.parse(defence)),
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "learning_rate": LEARNING_RATE[arch],
        "weights": None if weights is None else str(weights),
        "versions": package_versions(),
        "onednn": onednn_enabled(),
    }
    if training != "standard":
        key["training"] = training
    return key


def train_model(
    arch: str,
    dataset: Dataset,
    *,
    defence: str | Defence = "none",
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    weights: str | os.PathLike[str] | None = None,
    training: str = "standard",
    verbose: int | str = "auto",
) -> keras.Model:
    """Train ``arch`` on ``dataset`` with the filter ``defence`` at training and evaluation; cached.

    Returns the trained ``keras.Model`` (logits). See :func:`fit_cached` for the learning curves.
    """
    return fit_cached(
        arch, dataset, defence=defence, epochs=epochs, batch_size=batch_size, seed=seed,
        cache_dir=cache_dir, strategy=strategy, weights=weights, training=training, verbose=verbose,
    ).model


def fit_cached(
    arch: str,
    dataset: Dataset,
    *,
    defence: str | Defence = "none",
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    weights: str | os.PathLike[str] | None = None,
    training: str = "standard",
    verbose: int | str = "auto",
) -> TrainedModel:
    """Like :func:`train_model`, but also returns the learning curves, the file and whether it was cached."""
    import time

    arch = check_choice("arch", arch, ARCHITECTURES)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset: expected a helpers.training.data.Dataset, got {type(dataset).__name__}")
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(f"strategy: expected a tf.distribute.Strategy or None, got {type(strategy).__name__}")
    defence = Defence.parse(defence)
    check_build_args(arch, input_shape=dataset.input_shape, num_classes=dataset.num_classes, defence=defence, weights=weights)
    regime, _ = parse_regime(training)
    if regime != "standard" and not defence.is_none:
        raise ValueError(f"training: {training!r} trains the undefended model; got defence={str(defence)!r}")

    key = cache_key(arch, dataset, defence=defence, epochs=epochs, batch_size=batch_size, seed=seed, weights=weights,
                    training=training)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    cache = paths.models_dir() if cache_dir is None else Path(cache_dir)
    model_path, meta_path = cache / f"{arch}-{digest}.keras", cache / f"{arch}-{digest}.json"

    with _key_lock(cache / f".{arch}-{digest}.lock"):  # two notebooks at once: the second waits, then loads
        start, cpu_start = time.perf_counter(), time.process_time()
        cached = _load_verified(model_path, meta_path, key, strategy)
        if cached is not None:
            model, history = cached
            return TrainedModel(model, history, model_path, True, time.perf_counter() - start)

        with deterministic(seed):
            model, history = _fit(arch, dataset, defence=defence, epochs=epochs, batch_size=batch_size, seed=seed,
                                  strategy=strategy, weights=weights, training=training, verbose=verbose)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        _save_model(model, model_path)
        write_json({"key": key, "sha256": file_sha256(model_path), "history": history, "train_seconds": seconds,
                    "train_cpu_seconds": cpu_seconds}, meta_path)
        return TrainedModel(model, history, model_path, False, seconds)


@contextlib.contextmanager
def _key_lock(path: Path):
    """Hold an exclusive lock on ``path`` (created if missing) while the block runs: when the book runner runs two
    notebooks at once and both need the same model, one trains it and the other waits and loads it from the cache,
    instead of both training it and interleaving their writes of the ``.keras`` file and its JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fit(arch: str, dataset: Dataset, *, defence: Defence, epochs: int, batch_size: int, seed: int, strategy, weights,
         training: str, verbose) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build and train the model (call it under :func:`deterministic`); returns it with its learning curves."""
    x_check, y_check = (dataset.x_val, dataset.y_val) if len(dataset.y_val) else (dataset.x_test, dataset.y_test)
    if training != "standard":
        with _scope(strategy):
            model = build_model(arch, input_shape=dataset.input_shape, num_classes=dataset.num_classes, weights=weights)
            history = fit_regime(model, dataset.x_train, dataset.y_train, training=training, epochs=epochs, batch_size=batch_size,
                                 learning_rate=LEARNING_RATE[arch], seed=seed, x_check=x_check, y_check=y_check, verbose=verbose)
        return model, history
    with _scope(strategy):
        model = build_model(arch, input_shape=dataset.input_shape, num_classes=dataset.num_classes, defence=defence, weights=weights)
        # The filter is the model's first layer and has no weights, so training the layers after it on images
        # filtered once gives the same network as filtering every batch of every epoch, at a fraction of the cost
        # for wide median windows. The saved model keeps the filter inside.
        body = model if defence.is_none else keras.Model(filter_layers(model)[0].output, model.output)
        body.compile(
            optimizer=keras.optimizers.Adam(LEARNING_RATE[arch]),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    # Learning curves follow the validation images when the data set holds some (test images judge only).
    x_train, x_check = (defence.apply(x) for x in (dataset.x_train, x_check))
    fit = body.fit(
        x_train, dataset.y_train, validation_data=(x_check, y_check),
        epochs=epochs, batch_size=batch_size, shuffle=True, verbose=verbose,
    )
    return model, {k: [float(v) for v in values] for k, values in fit.history.items()}


def _save_model(model: keras.Model, model_path: Path) -> None:
    """Save atomically: to a temporary name in the same folder, then rename."""
    model_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = model_path.with_name(f".{model_path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, model_path)
    finally:
        tmp.unlink(missing_ok=True)


def _scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _load_verified(model_path: Path, meta_path: Path, key: dict, strategy) -> tuple[keras.Model, dict] | None:
    if not model_path.exists() and not meta_path.exists():
        return None
    try:
        meta = read_json(meta_path)
        if meta.get("key") != key:
            raise ValueError("its recorded arguments differ")
        if meta.get("sha256") != file_sha256(model_path):
            raise ValueError("its SHA-256 does not match the recorded one")
        with _scope(strategy):
            model = keras.models.load_model(model_path, safe_mode=True)
        return model, meta.get("history", {})
    except Exception as error:  # noqa: BLE001 - any failure means: do not trust the file
        warnings.warn(f"cached model {model_path.name} is not usable ({error}); retraining", stacklevel=3)
        model_path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        return None
