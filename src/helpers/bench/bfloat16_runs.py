"""The optional bfloat16 mode against float32 (chapter 08): what it gains in speed and what it changes in an attack.

The mode is :func:`helpers.training.models.bfloat16_copy`: the model's products in bfloat16, accumulated in float32 by
oneDNN, its filter and logits in float32. It is off everywhere in the book; this section measures it side by side
with float32 in interleaved rounds:

* the machine's ``tf.matmul`` and both models' attack steps (random inputs: speed does not depend on them);
* the paper's attack and DDN on the chapter's digits, through each copy: their time, and what they found. An
  adversarial found in bfloat16 is judged again by the float32 model, which is the model a reader deploys.

On a CPU without bfloat16 arithmetic TensorFlow emulates it, about ten times slower than float32: there ``repeats`` is
1, so the attacks are timed in one round and the steps in three (with five and fifteen, this section took 200 s of the
default book on such a CPU, against 67 s), and the prose says that the mode only slows it down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from helpers.attacks.attack import targeted_attack
from helpers.attacks.minnorm import ddn_l2
from helpers.bench.flops import attack_step_flops, gradient_step, random_batch
from helpers.bench.timing import interleaved_times, median, median_interval, paired_ratios
from helpers.core.engine import predict_logits
from helpers.core.validate import check_int
from helpers.training.models import bfloat16_available, bfloat16_copy

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

MODES = ("float32", "bfloat16")
MATMUL_N = 2048


@dataclass
class AttackInModes:
    """One attack on the same digits through the float32 model and its bfloat16 copy."""

    seconds: dict[str, list[float]]  # per mode, one per round
    success: dict[str, float]  # per mode: share of digits that reached their target on the model attacked
    kept_on_float32: float  # share of the bfloat16 run's adversarials that the float32 model also sends to the target
    median_l2: dict[str, float]  # per mode, over successes
    l2_ratio: tuple[float, float, float]  # per digit ‖δ‖₂ bfloat16 / float32 (both successes): median, 10th, 90th pct


@dataclass
class Bfloat16Mode:
    """Step and attack timings in both modes, and the attacks' outcomes (``available``: the CPU has bfloat16)."""

    available: bool
    gflops: dict[str, dict[str, float]]  # workload -> mode -> GFLOP/s (medians)
    step_seconds: dict[str, dict[str, list[float]]]  # workload -> mode -> seconds per round
    attacks: dict[str, AttackInModes]  # "paper", "ddn"
    labels: dict[str, str]  # workload -> how the table names it

    def speedups(self) -> dict[str, list[float]]:
        """Per workload and attack, float32's time over bfloat16's, round by round."""
        out = {name: paired_ratios(s["float32"], s["bfloat16"]) for name, s in self.step_seconds.items()}
        return out | {name: paired_ratios(a.seconds["float32"], a.seconds["bfloat16"]) for name, a in self.attacks.items()}

    def record(self) -> dict[str, Any]:
        return {"available": self.available, "gflops": self.gflops, "step_seconds": self.step_seconds,
                "speedups": self.speedups(),
                "attacks": {name: vars(a) | {"l2_ratio": list(a.l2_ratio)} for name, a in self.attacks.items()}}

    def table(self) -> Styler:
        rows = []
        for name, rounds in self.speedups().items():
            low, high, _ = median_interval(rounds)
            row = {"workload": self.labels[name], "float32 s": median(self._seconds(name)["float32"]),
                   "bfloat16 s": median(self._seconds(name)["bfloat16"]),
                   "speed-up ×": f"{median(rounds):.2f} [{low:.2f}, {high:.2f}]" if len(rounds) > 1 else f"{median(rounds):.2f}"}
            if name in self.gflops:
                row |= {"GFLOP/s float32": self.gflops[name]["float32"], "GFLOP/s bfloat16": self.gflops[name]["bfloat16"]}
            rows.append(row)
        return (pd.DataFrame(rows).style.format({"float32 s": "{:.3f}", "bfloat16 s": "{:.3f}", "GFLOP/s float32": "{:.0f}",
                                                  "GFLOP/s bfloat16": "{:.0f}"}, na_rep="—").hide(axis="index"))

    def quality_table(self) -> Styler:
        """Per attack: targets reached in each mode, the bfloat16 run's adversarials judged by the float32 model, and
        ‖δ‖₂ (medians, and the per-digit ratio bfloat16 / float32 with its 10th and 90th percentiles)."""
        rows = [{"attack": self.labels[name],
                 "reached % (f32 / bf16)": f"{100 * a.success['float32']:.1f} / {100 * a.success['bfloat16']:.1f}",
                 "bf16's reach it on f32 %": 100 * a.kept_on_float32,
                 "median ‖δ‖₂ (f32 / bf16)": f"{a.median_l2['float32']:.4f} / {a.median_l2['bfloat16']:.4f}",
                 "‖δ‖₂ bf16 / f32": a.l2_ratio[0], "10th–90th pct": f"{a.l2_ratio[1]:.4f}–{a.l2_ratio[2]:.4f}"}
                for name, a in self.attacks.items()]
        return pd.DataFrame(rows).style.format({"bf16's reach it on f32 %": "{:.1f}", "‖δ‖₂ bf16 / f32": "{:.4f}"}).hide(axis="index")

    def glued(self) -> dict[str, Any]:
        speed = {name: median(r) for name, r in self.speedups().items()}
        paper, ddn = self.attacks["paper"], self.attacks["ddn"]
        return {
            "bf16_available": "has" if self.available else "does not have",
            "bf16_matmul_gflops": self.gflops["matmul"]["bfloat16"], "bf16_matmul_speedup": speed["matmul"],
            "bf16_inception_speedup": speed["inception_v3"], "bf16_small_speedup": speed["small_cnn"],
            "bf16_paper_speedup": speed["paper"], "bf16_ddn_speedup": speed["ddn"],
            "bf16_inception_share": 100 * self.gflops["inception_v3"]["bfloat16"] / self.gflops["matmul"]["bfloat16"],
            "bf16_speed_sentence": self._speed_sentence(),
            "bf16_kept_sentence": self._kept_sentence(),
            "bf16_paper_ratio": paper.l2_ratio[0], "bf16_ddn_ratio": ddn.l2_ratio[0],
            "bf16_ddn_low": ddn.l2_ratio[1], "bf16_ddn_high": ddn.l2_ratio[2],
        }

    def _speed_sentence(self) -> str:
        """What bfloat16 gained (or, emulated, lost) in speed, in words."""
        speed = {name: median(r) for name, r in self.speedups().items()}
        whole = f"{speed['paper']:.2f}× (the paper's attack) and {speed['ddn']:.2f}× (DDN)"
        if not self.available:
            rounds = {name: len(r) for name, r in self.speedups().items()}
            return (f"This CPU has no bfloat16 arithmetic, so TensorFlow emulates it and the mode only slows the attacks down: "
                    f"tf.matmul ran at {speed['matmul']:.2f}× float32's rate, the attack steps at "
                    f"{speed['inception_v3']:.2f}× on InceptionV3 and {speed['small_cnn']:.2f}× on the small CNN, and whole "
                    f"attacks at {whole}. On such a CPU the steps are timed in {rounds['matmul']} rounds and the attacks in "
                    f"{rounds['ddn']}, since the emulated attacks take minutes; the mode is meant for CPUs with AMX or "
                    "AVX512-BF16")
        share = 100 * self.gflops["inception_v3"]["bfloat16"] / self.gflops["matmul"]["bfloat16"]
        return (f"bfloat16 ran tf.matmul at {self.gflops['matmul']['bfloat16']:.0f} GFLOP/s, {speed['matmul']:.1f}× "
                f"float32's rate, but the attack steps gained far less: {speed['inception_v3']:.2f}× on InceptionV3 and "
                f"{speed['small_cnn']:.2f}× on the small CNN. The convolutions and their input gradients do not reach the "
                f"product's rate (InceptionV3's step ran at {share:.0f} % of bfloat16's tf.matmul), and the operations "
                f"that only move memory gain little. Whole attacks gained {whole}")

    def _kept_sentence(self) -> str:
        """How many of the bfloat16 runs' adversarials the float32 model agrees with, and what follows, in words."""
        kept = {name: 100 * a.kept_on_float32 for name, a in self.attacks.items()}
        if all(k == 100 for k in kept.values()):
            return ("An attack stops as soon as the bfloat16 copy predicts the target, and here the float32 model also "
                    "predicted the target at every one of those points")
        return (f"An attack stops as soon as the bfloat16 copy predicts the target, and the float32 model agreed at "
                f"{kept['paper']:.1f} % of the paper's attack's points and {kept['ddn']:.1f} % of DDN's (which end on the "
                "boundary, where a rounding decides the class). So bfloat16 can speed up a search, but its result must be "
                "checked, or finished, in float32")

    def _seconds(self, name: str) -> dict[str, list[float]]:
        return self.step_seconds[name] if name in self.step_seconds else self.attacks[name].seconds


def bfloat16_mode(
    model: keras.Model, inception: keras.Model, images: np.ndarray, labels: np.ndarray, targets: np.ndarray, *,
    step: float, max_steps: int, minnorm_steps: int, inception_batch: int, small_batch: int, repeats: int,
    native: bool | None = None,
) -> Bfloat16Mode:
    """The float32 models and their :func:`helpers.training.models.bfloat16_copy` side by side: ``tf.matmul`` of
    :data:`MATMUL_N` squares, each model's attack step, and the paper's attack (``step``, ``max_steps``) and DDN
    (``minnorm_steps``) on ``images`` toward ``targets``; ``3·repeats`` rounds for the steps, ``repeats`` for the attacks.
    ``native``: whether the CPU has bfloat16 arithmetic (``None``: read it, :func:`bfloat16_available`); without it,
    ``repeats`` is 1."""
    repeats = check_int("repeats", repeats, minimum=1)
    native = bfloat16_available() if native is None else bool(native)
    repeats = repeats if native else 1
    inception_batch = check_int("inception_batch", inception_batch, minimum=1)
    small_batch = check_int("small_batch", small_batch, minimum=1)
    copies = {"float32": {"inception_v3": inception, "small_cnn": model},
              "bfloat16": {"inception_v3": bfloat16_copy(inception), "small_cnn": bfloat16_copy(model)}}
    batches = {"inception_v3": random_batch(inception, inception_batch), "small_cnn": random_batch(model, small_batch)}
    rng = np.random.default_rng(0)
    operands = {mode: [tf.constant(rng.standard_normal((MATMUL_N, MATMUL_N)), dtype) for _ in range(2)]
                for mode, dtype in zip(MODES, (tf.float32, tf.bfloat16), strict=True)}
    calls = {}
    for mode in MODES:
        a, b = operands[mode]
        calls[("matmul", mode)] = tf.function(lambda a=a, b=b: tf.matmul(a, b))
        for name, net in copies[mode].items():
            f, (x, t) = gradient_step(net), batches[name]
            calls[(name, mode)] = lambda f=f, x=x, t=t: f(x, t)
    times = interleaved_times(calls, repeats=3 * repeats)
    flops = {"matmul": 2 * MATMUL_N**3, "inception_v3": attack_step_flops(inception) * inception_batch,
             "small_cnn": attack_step_flops(model) * small_batch}
    step_seconds = {name: {mode: times[(name, mode)] for mode in MODES} for name in flops}
    gflops = {name: {mode: flops[name] / median(times[(name, mode)]) / 1e9 for mode in MODES} for name in flops}

    runs = {"paper": lambda net: targeted_attack(net, images, targets, step=step, max_steps=max_steps, progress=False),
            "ddn": lambda net: ddn_l2(net, images, labels, targets=targets, steps=minnorm_steps)}
    attacks = {}
    for name, run in runs.items():
        outcome = {mode: run(copies[mode]["small_cnn"]) for mode in MODES}  # also traces each mode's loop
        seconds = interleaved_times({mode: (lambda mode=mode, run=run: run(copies[mode]["small_cnn"])) for mode in MODES},
                                    repeats=repeats, warmup=0)
        attacks[name] = _outcome(model, outcome, targets, seconds)
    labels_ = {"matmul": f"tf.matmul {MATMUL_N}×{MATMUL_N}",
               "inception_v3": f"InceptionV3 attack step ({inception.input_shape[1]} px, batch {inception_batch})",
               "small_cnn": f"small CNN attack step (batch {small_batch})",
               "paper": f"paper's attack, {len(images)} digits", "ddn": f"DDN ({minnorm_steps} steps), {len(images)} digits"}
    return Bfloat16Mode(native, gflops, step_seconds, attacks, labels_)


def _outcome(model: keras.Model, outcome: dict[str, Any], targets: np.ndarray, seconds: dict[str, list[float]]) -> AttackInModes:
    """What each mode's run found, and the bfloat16 run's adversarials judged by the float32 model."""
    kept = predict_logits(model, outcome["bfloat16"].adversarial).argmax(axis=1) == targets
    both = outcome["float32"].success & outcome["bfloat16"].success
    ratio = outcome["bfloat16"].l2[both] / outcome["float32"].l2[both]
    nan = float("nan")
    return AttackInModes(
        seconds={mode: list(seconds[mode]) for mode in MODES},
        success={mode: float(outcome[mode].success.mean()) for mode in MODES},
        kept_on_float32=float(np.mean(kept & outcome["bfloat16"].success)),
        median_l2={mode: float(np.median(outcome[mode].l2[outcome[mode].success])) if outcome[mode].success.any() else nan
                   for mode in MODES},
        l2_ratio=tuple(float(v) for v in np.percentile(ratio, [50, 10, 90])) if len(ratio) else (nan, nan, nan),
    )
