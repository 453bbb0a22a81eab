"""The attacks the engine (:mod:`helpers.attacks.attack`) is timed against in the performance chapter.

* :func:`seed_loop_attack` — the paper's code listing ported to TF2 eager: one image at a time, one
  ``GradientTape`` per step, check the prediction, step, up to ``max_steps``.
* :func:`library_attack` — the same targeted L2 attack with IBM ART (``ProjectedGradientDescentTensorFlowV2``)
  or Foolbox (``L2BasicIterativeAttack``), when they are installed (``requirements-bench.txt``).
* :func:`success_rate`, :func:`steps_for_success` — how many fixed steps a library needs to reach a success rate.
* :func:`early_stopping_costs` — the evaluations different stopping rules spend on the same examples.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from helpers.attacks.attack import OBJECTIVES, OUT_OF_STEPS, REACHED, RUNNING, STALLED, AttackResult, loss_and_gradient
from helpers.core.contract import l2_distances
from helpers.core.engine import check_classifier, check_model_images
from helpers.core.validate import check_choice, check_float, check_int, check_labels

# Distribution names of the attack libraries compared against (pinned in requirements-bench.txt).
LIBRARIES = {"art": "adversarial-robustness-toolbox", "foolbox": "foolbox"}
LIBRARY_LABELS = {"art": "ART PGD-L2", "foolbox": "Foolbox L2-BIM"}

Attack = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


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

    Same update, stopping rule and result as :func:`helpers.attacks.attack.targeted_attack` (which batches and
    compiles it); the listing itself ascends the target's softmax (``objective="target_probability"``).
    """
    num_classes = check_classifier(model)
    step = check_float("step", step, minimum=0.0, strict_minimum=True)
    max_steps = check_int("max_steps", max_steps, minimum=0)
    objective = check_choice("objective", objective, OBJECTIVES)
    if clip is not None and (len(clip) != 2 or not clip[0] < clip[1]):
        raise ValueError(f"clip: expected (low, high) with low < high, or None; got {clip!r}")
    images = check_model_images(model, images, value_range=None if clip is None else tuple(clip))
    targets = check_labels("targets", targets, length=len(images), num_classes=num_classes)

    adversarial = images.copy()
    status = np.full(len(images), RUNNING, dtype=np.int32)
    steps = np.zeros(len(images), dtype=np.int32)
    for i in range(len(images)):
        adversarial[i], status[i], steps[i] = _seed_loop_one(
            model, images[i : i + 1], int(targets[i]), step=step, max_steps=max_steps, objective=objective, clip=clip
        )
    return AttackResult(
        adversarial=adversarial,
        success=status == REACHED,
        steps=steps,
        l2=l2_distances(adversarial, images),
        stalled=status == STALLED,
    )


def _seed_loop_one(
    model: keras.Model, image: np.ndarray, target: int, *, step: float, max_steps: int, objective: str,
    clip: tuple[float, float] | None,
) -> tuple[np.ndarray, int, int]:
    """One image (a batch of one) through the listing's loop: (adversarial image, status, steps taken)."""
    x = tf.constant(image)
    t = tf.constant(np.array([target], dtype=np.int32))
    status, steps = RUNNING, 0
    for taken in range(max_steps + 1):
        logits, grad = loss_and_gradient(model, x, t, objective)
        if int(tf.argmax(logits[0])) == target:
            status = REACHED
            break
        if taken == max_steps:
            status = OUT_OF_STEPS
            break
        norm = float(tf.norm(grad))
        if norm == 0.0:
            status = STALLED
            break
        x = x - step * (grad / norm)
        if clip is not None:
            x = tf.clip_by_value(x, clip[0], clip[1])
        steps = taken + 1
    return x.numpy()[0], status, steps


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


def library_attack(library: str, model: keras.Model, *, step: float = 0.1, batch_size: int = 64) -> Attack:
    """A function ``attack(images, targets, steps) -> adversarial`` running ``library``'s targeted L2 attack
    with the paper's update (``x ← clip(x − step·g/‖g‖₂)`` on the cross-entropy to the target, no random start)
    for exactly ``steps`` steps on every image — neither library stops an image early.

    The L2 ball of these projected attacks gets a radius no perturbation in [0, 1] can reach, so that it never
    binds, as in the paper's unbounded attack. Raises ``ImportError`` when the library is not installed.
    """
    library = check_choice("library", library, LIBRARIES)
    num_classes = check_classifier(model)
    step = check_float("step", step, minimum=0.0, strict_minimum=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    shape = tuple(model.input_shape[1:])
    radius = math.sqrt(math.prod(shape)) + 1.0  # larger than any distance between two [0, 1] images
    if library == "art":
        return _art_attack(model, shape=shape, num_classes=num_classes, step=step, batch_size=batch_size, radius=radius)
    return _foolbox_attack(model, step=step, batch_size=batch_size, radius=radius)


def _quiet_import_and_build(build: Callable[[], Any]) -> Any:
    """Run ``build`` with Python warnings and TensorFlow's Python log below errors silenced (the libraries warn
    at import about PyTorch not being installed and about deprecated TensorFlow calls)."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build()
    finally:
        logger.setLevel(level)


def _art_attack(
    model: keras.Model, *, shape: tuple[int, ...], num_classes: int, step: float, batch_size: int, radius: float
) -> Attack:
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


def _foolbox_attack(model: keras.Model, *, step: float, batch_size: int, radius: float) -> Attack:
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


# --- How many steps a fixed-step attack needs ---------------------------------------------------------------


def success_rate(model: keras.Model, adversarial: np.ndarray, targets: np.ndarray, *, batch_size: int = 256) -> float:
    """Share of ``adversarial`` images the model classifies as their target."""
    check_classifier(model)
    batch_size = check_int("batch_size", batch_size, minimum=1)
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
    if not callable(success_after):
        raise TypeError(f"success_after: expected a callable, got {type(success_after).__name__}")
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


def early_stopping_costs(steps: np.ndarray, *, batch_size: int, max_steps: int) -> dict[str, int]:
    """Forward+backward evaluations that different stopping rules spend on examples needing ``steps`` steps.

    * ``engine``: every example stops on its own and its slot is refilled at once: Σ (steps + 1);
    * ``whole_batch``: batches of ``batch_size`` run until their slowest example is done;
    * ``slowest``: every example runs as many steps as the slowest one needs (ART, Foolbox at that count);
    * ``max_steps``: every example runs the full budget (the paper's 1000 steps).
    """
    steps = np.asarray(steps, dtype=np.int64)
    if steps.ndim != 1:
        raise ValueError(f"steps: expected one step count per example, got shape {steps.shape}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    max_steps = check_int("max_steps", max_steps, minimum=0)
    batches = [steps[i : i + batch_size] for i in range(0, len(steps), batch_size)]
    return {
        "engine": int((steps + 1).sum()),
        "whole_batch": int(sum(len(b) * (int(b.max()) + 1) for b in batches)),
        "slowest": int(len(steps) * (int(steps.max()) + 1)) if len(steps) else 0,
        "max_steps": int(len(steps) * (max_steps + 1)),
    }
