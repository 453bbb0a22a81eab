"""Evaluation: clean accuracy, the attack on correctly classified test images, the paper's score."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np

from helpers.attacks.attack import AttackResult, targeted_attack
from helpers.core.engine import predict_logits  # the chapters import it from here too
from helpers.core.validate import check_images, check_int, check_labels
from helpers.defences.filters import Defence
from helpers.studies.verdicts import RMS_THRESHOLD


@dataclass
class AttackSummary:
    """Aggregate of an attack evaluation; ``result`` keeps the per-example arrays."""

    n_attacked: int
    success_rate: float
    mean_l2: float  # over successful examples
    median_l2: float  # over successful examples
    mean_steps: float
    stalled: int
    indices: np.ndarray  # indices into the test set of the attacked images
    targets: np.ndarray
    result: AttackResult

    def row(self) -> dict[str, float | int]:
        """The scalar fields, for a results table."""
        return {k: v for k, v in asdict(self).items() if k not in ("indices", "targets", "result")}


def clean_accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 256) -> float:
    """Share of ``images`` whose predicted class equals ``labels``."""
    logits = predict_logits(model, images, batch_size=batch_size)
    labels = check_labels("labels", labels, length=len(logits), num_classes=logits.shape[-1])
    return float((logits.argmax(axis=1) == labels).mean())


def random_targets(labels: np.ndarray, *, num_classes: int, seed: int = 0) -> np.ndarray:
    """One uniformly random target per label, never equal to it (seeded)."""
    num_classes = check_int("num_classes", num_classes, minimum=2)
    labels = np.asarray(labels, dtype=np.int64)
    offsets = np.random.default_rng(seed).integers(1, num_classes, size=len(labels))
    return (labels + offsets) % num_classes


def attack_set(model: keras.Model, images: np.ndarray, labels: np.ndarray, *, n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The images every attack of a chapter uses: up to ``n_images`` correctly classified ones, drawn at random
    (seeded) and kept in test-set order, each with a seeded random wrong target. Returns (indices, targets)."""
    n_images = check_int("n_images", n_images, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    logits = predict_logits(model, images)
    labels = check_labels("labels", labels, length=len(logits), num_classes=logits.shape[-1])
    correct = np.flatnonzero(logits.argmax(axis=1) == labels)
    if len(correct) == 0:
        raise ValueError("model: classifies none of the images correctly; nothing to attack")
    indices = np.sort(np.random.default_rng(seed).permutation(correct)[:n_images])
    return indices, random_targets(labels[indices], num_classes=logits.shape[-1], seed=seed)


def attack_evaluation(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_images: int = 500,
    seed: int = 0,
    step: float = 0.1,
    max_steps: int = 1000,
    objective: str = "cross_entropy",
    batch_size: int = 256,
    progress: bool = True,
) -> AttackSummary:
    """Attack up to ``n_images`` correctly classified images, each towards a seeded random wrong class.

    Success rate is over attacked images; mean and median ‖δ‖₂ are over the successful ones (an
    unbounded attack that fails has no meaningful distance).
    """
    indices, targets = attack_set(model, images, labels, n_images=n_images, seed=seed)
    result = targeted_attack(
        model, images[indices], targets, step=step, max_steps=max_steps, objective=objective,
        batch_size=batch_size, progress=progress,
    )
    ok = result.success
    return AttackSummary(
        n_attacked=len(indices),
        success_rate=float(ok.mean()),
        mean_l2=float(result.l2[ok].mean()) if ok.any() else float("nan"),
        median_l2=float(np.median(result.l2[ok])) if ok.any() else float("nan"),
        mean_steps=float(result.steps.mean()),
        stalled=int(result.stalled.sum()),
        indices=indices,
        targets=targets,
        result=result,
    )


# A change of one pixel by more than this is taken as just noticeable: the same 8/255 as C1's RMS threshold, one
# constant (:data:`helpers.studies.verdicts.RMS_THRESHOLD`) under the name the perceptibility measures use.
JND = RMS_THRESHOLD


def perceptibility(images: np.ndarray, adversarial: np.ndarray, *, jnd: float = JND) -> dict[str, np.ndarray]:
    """Per image: the RMS change per pixel, the largest change (L∞), and the share of pixels changed by more than
    ``jnd`` — three views of how visible a perturbation is, all in [0, 1] pixel units."""
    images, adversarial = check_images("images", images, value_range=None), check_images("adversarial", adversarial, value_range=None)
    if images.shape != adversarial.shape:
        raise ValueError(f"adversarial: shape {adversarial.shape} differs from images {images.shape}")
    delta = np.abs(adversarial.astype(np.float64) - images.astype(np.float64)).reshape(len(images), -1)
    return {"rms": np.sqrt((delta**2).mean(axis=1)), "linf": delta.max(axis=1), "share_above_jnd": (delta > jnd).mean(axis=1)}


def paper_score(accuracy: float, mean_l2: float) -> float:
    """The paper's figure of merit for a filter: ``accuracy × ‖I_adv − I‖`` (higher is better)."""
    return float(accuracy) * float(mean_l2)


def filter_transfer(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    adversarial: np.ndarray,
    targets: np.ndarray,
    defences: list[str | Defence],
) -> list[dict[str, float | str]]:
    """Blur clean and adversarial images with each defence and ask an *undefended* model about them.

    For each defence: accuracy on the blurred clean images, and on the blurred adversarial images the
    share still classified as the target and the share restored to the true label. With no images (no attack
    succeeded) every share is NaN.
    """
    rows = []
    for defence in map(Defence.parse, defences):
        if len(images) == 0:
            rows.append({"defence": str(defence), "label": defence.label, "clean_accuracy": float("nan"),
                         "still_target": float("nan"), "restored": float("nan")})
            continue
        clean = predict_logits(model, defence.apply(images)).argmax(1)
        adv = predict_logits(model, defence.apply(adversarial)).argmax(1)
        rows.append({
            "defence": str(defence),
            "label": defence.label,
            "clean_accuracy": float((clean == labels).mean()),
            "still_target": float((adv == targets).mean()),
            "restored": float((adv == labels).mean()),
        })
    return rows
