"""The sections of the performance chapter (``notebooks/08_performance``), one function each.

Each function runs a section's measurements with :mod:`helpers.timing`, :mod:`helpers.reference_attacks`,
:mod:`helpers.flops`, :mod:`helpers.filter_costs` and :mod:`helpers.browser_slider`, and returns a small
dataclass holding them, with

* ``record()`` — what the section adds to ``benchmark.json`` (:data:`helpers.results.BENCHMARK`);
* ``glued()`` — the numbers and sentences the chapter's prose shows, by glue name;
* ``table()`` / ``figure()`` where the section shows one.

:func:`goal_rows` compares the measurements with the chapter's goals and explains each missed one;
:func:`benchmark_document` assembles the JSON document.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib.figure import Figure

from helpers import paths
from helpers.attack import AttackResult, EngineStats, run_engine, targeted_attack
from helpers.browser_slider import FirstRender, PageAssets, first_render_seconds, page_assets, slider_cell_html
from helpers.filter_costs import gaussian_blur_times, training_step_times
from helpers.filters import Defence
from helpers.flops import (
    attack_step_flops,
    forward_flops,
    gradient_step,
    kernel_rates,
    kernel_rates_in_child,
    op_time_profile,
    random_batch,
    step_throughput,
    xla_against_graph,
)
from helpers.peers import PEER_GOAL, PeerComparison
from helpers.reference_attacks import (
    LIBRARIES,
    LIBRARY_LABELS,
    early_stopping_costs,
    library_attack,
    seed_loop_attack,
    steps_for_success,
    success_rate,
)
from helpers.runlog import run_log_table
from helpers.timing import goal_row, interleaved_times, load_average, median, timed_call
from helpers.validate import check_int

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

# The working batch of every attack in the chapter, and the filters whose training cost it measures.
ATTACK_BATCH = 64
TRAINING_DEFENCES = ("gaussian:1.5", "median:3")
TRAINING_GLUE = {"gaussian:1.5": "gauss", "median:3": "median"}  # prefix of each filter's glued names
BLUR_SIGMA = 1.5  # the Gaussian blur timed as matrix products and as a depthwise convolution
SEED_LOOP_GOAL = 40  # × faster than the seed loop, run to success


def machine_glued(machine: Mapping[str, Any]) -> dict[str, Any]:
    """The machine's description for the prose (from :func:`helpers.timing.machine_info`)."""
    return {
        "cpu": machine["cpu"],
        "cores": machine["cores"],
        "memory": machine["memory_gib"],
        "simd": ", ".join(machine["simd"]) or "none",
        "onednn": "on" if machine["onednn"] else "off",
        "load_start": machine["load_average"] if machine["load_average"] is not None else float("nan"),
    }


# --- The engine and early stopping -------------------------------------------------------------------------


@dataclass
class EngineRun:
    """The engine on the chapter's workload: its result, what it computed, its times and stopping-rule costs."""

    images: np.ndarray
    targets: np.ndarray
    attack_args: dict[str, Any]
    result: AttackResult
    stats: EngineStats
    seconds: list[float]
    costs: dict[str, int]
    max_steps: int
    ceiling_seconds: list[float] = field(default_factory=list)  # the same model's forward+backward, timed alongside
    ceiling_batch: int = 0  # its batch: the engine's working batch
    ceiling_steps: int = 0  # forward+backward passes per round: as many image-steps as the engine computes

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def images_per_s(self) -> float:
        return self.n / median(self.seconds)

    def record(self) -> dict[str, Any]:
        result, stats = self.result, self.stats
        return {
            "images": self.n, "success_rate": result.success_rate, "mean_steps": float(result.steps.mean()),
            "slowest_steps": int(result.steps.max()), "calls": stats.calls, "evaluations": stats.evaluations,
            "needed": stats.needed, "efficiency": stats.efficiency, "seconds": self.seconds, "images_per_s": self.images_per_s,
            "steps_per_s": stats.evaluations / median(self.seconds), "stopping_rule_evaluations": self.costs,
            "ceiling_seconds": self.ceiling_seconds, "ceiling_batch": self.ceiling_batch, "ceiling_steps": self.ceiling_steps,
        }

    def glued(self) -> dict[str, Any]:
        costs = self.costs
        return {
            "n_images": self.n, "engine_success": self.result.success_rate * 100, "engine_ips": self.images_per_s,
            "engine_sps": self.record()["steps_per_s"], "engine_efficiency": self.stats.efficiency * 100,
            "engine_calls": self.stats.calls, "mean_steps": self.result.steps.mean(),
            "slowest_steps": int(self.result.steps.max()), "cost_whole_batch": costs["whole_batch"] / costs["engine"],
            "cost_slowest": costs["slowest"] / costs["engine"], "cost_max_steps": costs["max_steps"] / costs["engine"],
        } | _ceiling_glued(self)

    def table(self) -> Styler:
        """Forward+backward evaluations of each stopping rule, and as a multiple of the engine's."""
        costs = self.costs
        return pd.DataFrame(
            [("engine: each image stops on its own, its slot is refilled", costs["engine"]),
             (f"a batch of {ATTACK_BATCH} runs until its slowest image is done", costs["whole_batch"]),
             ("every image runs as many steps as the slowest (ART, Foolbox)", costs["slowest"]),
             (f"every image runs the full budget of {self.max_steps} steps", costs["max_steps"])],
            columns=["stopping rule", "forward+backward evaluations"],
        ).assign(**{"× engine": lambda d: d.iloc[:, 1] / costs["engine"]}).style.format({"× engine": "{:.1f}"}).hide(axis="index")

    def figure(self) -> Figure:
        """Histogram of the steps each image needed, with the mean and the slowest marked."""
        steps = self.result.steps
        fig = Figure(figsize=(6.4, 3.2), layout="constrained")
        ax = fig.subplots()
        ax.hist(steps, bins=min(40, max(5, len(np.unique(steps)))), color="tab:blue")
        ax.axvline(steps.mean(), color="k", ls="--", lw=1, label=f"mean {steps.mean():.0f}: what the engine pays per image")
        ax.axvline(steps.max(), color="tab:red", ls=":", lw=1.5, label=f"slowest {steps.max()}: what a fixed step count pays")
        ax.set_xlabel("steps this image needed to reach its target")
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
        return fig


def _ceiling_glued(engine: EngineRun) -> dict[str, Any]:
    ceiling = engine_ceiling(engine)
    if ceiling is None:
        return {"ceiling_sps": float("nan"), "ceiling_share": float("nan"), "ceiling_batch": 0}
    return {"ceiling_sps": ceiling["ceiling"], "ceiling_share": ceiling["share"], "ceiling_batch": ceiling["batch"]}


def engine_run(
    model: keras.Model, images: np.ndarray, targets: np.ndarray, *, step: float, max_steps: int, repeats: int
) -> EngineRun:
    """The engine on ``images`` once with its statistics, then timed ``repeats`` times; the stopping-rule costs
    of the steps it took."""
    attack_args = {"step": step, "max_steps": max_steps, "batch_size": ATTACK_BATCH, "progress": False}
    result, stats = run_engine(model, images, targets, **attack_args)
    # The engine's ceiling: the model's compiled forward+backward at the engine's full working batch, doing as many
    # image-steps as the engine computed, timed in the same rounds (so a change in load hits both alike).
    width = max(stats.widths)
    passes = max(1, round(stats.evaluations / width))
    full_step = gradient_step(model)
    x, t = tf.constant(images[:width]), tf.constant(targets[:width].astype(np.int32))
    times = interleaved_times({"engine": lambda: targeted_attack(model, images, targets, **attack_args),
                               "ceiling": lambda: [full_step(x, t) for _ in range(passes)]}, repeats=repeats)
    costs = early_stopping_costs(result.steps, batch_size=ATTACK_BATCH, max_steps=max_steps)
    return EngineRun(images, targets, attack_args, result, stats, times["engine"], costs, max_steps, times["ceiling"], width,
                     passes)


# --- The seed's loop ---------------------------------------------------------------------------------------


@dataclass
class SeedLoopRun:
    """The paper's one-image loop and the engine on the same first images of the workload."""

    result: AttackResult
    engine_result: AttackResult
    seconds: list[float]
    engine_seconds: list[float]

    @property
    def n(self) -> int:
        return len(self.result.steps)

    @property
    def step_seconds(self) -> float:
        """Median seconds per forward+backward evaluation of the loop (its steps plus one per image)."""
        return median(self.seconds) / (int(self.result.steps.sum()) + self.n)

    def record(self) -> dict[str, Any]:
        m, seed, engine = self.n, self.result, self.engine_result
        return {
            "images": m, "seconds": self.seconds, "engine_seconds": self.engine_seconds,
            "images_per_s": m / median(self.seconds), "engine_images_per_s": m / median(self.engine_seconds),
            "ratio": median(self.seconds) / median(self.engine_seconds),
            "same_success": bool((seed.success == engine.success).all()),
            "same_steps": int((seed.steps == engine.steps).sum()),
            "max_l2_difference": float(np.abs(seed.l2 - engine.l2).max()),
        }

    def glued(self) -> dict[str, Any]:
        r = self.record()
        disagree = int((self.result.success != self.engine_result.success).sum())
        return {
            "seed_n": self.n, "seed_ips": r["images_per_s"], "seed_engine_ips": r["engine_images_per_s"],
            "seed_ratio": r["ratio"], "seed_same_steps": r["same_steps"],
            "seed_same": "Both reached the same targets" if r["same_success"] else f"They disagreed on {disagree} images' success",
            "seed_l2_diff": r["max_l2_difference"],
        }


def seed_loop_run(model: keras.Model, engine: EngineRun, *, n_images: int, repeats: int) -> SeedLoopRun:
    """The seed loop and the engine on the first ``n_images`` of the workload. The first round's results are
    kept (to compare them) and timed; ``repeats − 1`` interleaved rounds only time."""
    n_images = check_int("n_images", n_images, minimum=1)
    repeats = check_int("repeats", repeats, minimum=1)
    images, targets = engine.images[:n_images], engine.targets[:n_images]
    args = engine.attack_args
    contenders = {
        "seed loop": lambda: seed_loop_attack(model, images, targets, step=args["step"], max_steps=args["max_steps"]),
        "engine": lambda: targeted_attack(model, images, targets, **args),
    }
    seed_result, seed_first = timed_call(contenders["seed loop"])
    engine_result, engine_first = timed_call(contenders["engine"])
    times = {"seed loop": [seed_first], "engine": [engine_first]}
    if repeats > 1:
        for key, values in interleaved_times(contenders, repeats=repeats - 1, warmup=0).items():
            times[key] += values
    return SeedLoopRun(seed_result, engine_result, times["seed loop"], times["engine"])


# --- ART and Foolbox ---------------------------------------------------------------------------------------


@dataclass
class Budget:
    """The engine run with a fixed budget: the evaluations per image it spent to reach its targets."""

    steps: int
    args: dict[str, Any]
    result: AttackResult
    stats: EngineStats


@dataclass
class LibraryComparison:
    """Each library's row (``status`` "ok", "not installed" or "failed: …") and the engine's equal-budget run."""

    libraries: dict[str, dict[str, Any]]
    budget: Budget
    engine: EngineRun = field(repr=False)

    def record_budget(self) -> dict[str, Any]:
        return {"max_steps": self.budget.steps, "success_rate": self.budget.result.success_rate,
                "evaluations": self.budget.stats.evaluations}

    def glued(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in LIBRARIES:
            row = self.libraries.get(name, {"version": None, "status": "not installed"})
            ok = row["status"] == "ok"
            values[f"{name}_status"] = row["status"] if not ok else f"version {row['version']}"
            values[f"{name}_equal_ratio"] = row["equal_ratio"] if ok else float("nan")
            values[f"{name}_success_ratio"] = row["success_ratio"] if ok else float("nan")
            values[f"{name}_success_steps"] = row["success_steps"] if ok else 0
            values[f"{name}_equal_per_eval"] = row["equal_ratio_per_evaluation"] if ok else float("nan")
        values["k_equal"] = self.budget.steps
        return values

    def table(self) -> Styler:
        """The engine at the equal budget and to success, then each library at both."""
        k, engine = self.budget.steps, self.engine
        rows = [
            {"attack": "our engine", "comparison": f"budget of {k} steps", "steps per image": k,
             "success %": 100 * self.budget.result.success_rate,
             "images/s": next((r["engine_equal_images_per_s"] for r in self.libraries.values() if r["status"] == "ok"), None)},
            {"attack": "our engine", "comparison": "to success", "steps per image": engine.result.steps.mean(),
             "success %": 100 * engine.result.success_rate, "images/s": engine.images_per_s},
        ]
        for name, row in self.libraries.items():
            label = f"{LIBRARY_LABELS[name]} {row['version'] or ''}".strip()
            if row["status"] != "ok":
                rows.append({"attack": label, "comparison": row["status"]})
                continue
            rows.append({"attack": label, "comparison": f"budget of {k} steps", "steps per image": row["equal_steps"],
                         "success %": 100 * row["equal_success_rate"], "images/s": row["equal_images_per_s"],
                         "engine ×": row["equal_ratio"], "engine × per evaluation": row["equal_ratio_per_evaluation"]})
            rows.append({"attack": label, "comparison": "to our success", "steps per image": row["success_steps"],
                         "success %": 100 * row["success_rate"], "images/s": row["success_images_per_s"],
                         "engine ×": row["success_ratio"]})
        return pd.DataFrame(rows).style.format(precision=1, na_rep="—").hide(axis="index")


def library_comparison(
    model: keras.Model, engine: EngineRun, versions: Mapping[str, str | None], *, repeats: int
) -> LibraryComparison:
    """Every library in ``versions`` (``None``: not installed) against the engine, at equal steps and to the
    engine's success rate (:func:`compare_library`); a library that raises is reported, not hidden."""
    unknown = sorted(set(versions) - set(LIBRARIES))
    if unknown:
        raise ValueError(f"versions: unknown library {unknown[0]!r}; known: {', '.join(LIBRARIES)}")
    n = engine.n
    k_equal = max(1, round(engine.stats.evaluations / n))
    budget_args = engine.attack_args | {"max_steps": k_equal}
    budget_result, budget_stats = run_engine(model, engine.images, engine.targets, **budget_args)
    budget = Budget(k_equal, budget_args, budget_result, budget_stats)
    libraries = {}
    for name, version in versions.items():
        row: dict[str, Any] = {"version": version, "status": "not installed"}
        libraries[name] = row
        if version is None:
            continue
        try:
            row.update(compare_library(name, model, engine, budget, repeats=repeats))
        except Exception as error:  # noqa: BLE001 - a library that breaks is reported, not hidden
            row.update({"status": f"failed: {type(error).__name__}: {str(error).splitlines()[0][:160]}"})
    return LibraryComparison(libraries, budget, engine)


def compare_library(name: str, model: keras.Model, engine: EngineRun, budget: Budget, *, repeats: int) -> dict[str, Any]:
    """``name``'s attack timed at the engine's equal budget and run to the engine's success rate (trying the step
    count at which that share of images had arrived first, growing it by 25 %), with the engine timed alongside."""
    repeats = check_int("repeats", repeats, minimum=1)
    images, targets, k_equal = engine.images, engine.targets, budget.steps
    attack = library_attack(name, model, step=engine.attack_args["step"], batch_size=ATTACK_BATCH)
    goal = engine.result.success_rate
    k_start = max(1, int(np.ceil(np.quantile(engine.result.steps, goal)))) if goal > 0 else 1
    k_success, rate, tried = steps_for_success(
        lambda k: success_rate(model, attack(images, targets, k), targets),
        goal=goal, start=k_start, limit=engine.max_steps,
    )
    adv_equal, _ = timed_call(lambda: attack(images, targets, k_equal))
    times = interleaved_times(
        {"engine": lambda: targeted_attack(model, images, targets, **engine.attack_args),
         "engine equal": lambda: targeted_attack(model, images, targets, **budget.args),
         "equal": lambda: attack(images, targets, k_equal)},
        repeats=repeats, warmup=0,
    )
    # The search's last try was a full run at k_success: it is the first timing sample.
    times["success"] = [tried[-1][2]]
    if repeats > 1:
        times["success"] += interleaved_times(
            {"success": lambda: attack(images, targets, k_success)}, repeats=repeats - 1, warmup=0
        )["success"]
    return _library_row(times, engine.n, budget, success_rate(model, adv_equal, targets), (k_success, rate, tried))


def _library_row(
    times: dict[str, list[float]], n: int, budget: Budget, equal_success_rate: float,
    search: tuple[int, float, list[tuple[int, float, float]]],
) -> dict[str, Any]:
    k_equal, (k_success, rate, tried) = budget.steps, search
    equal, engine_equal = median(times["equal"]), median(times["engine equal"])
    return {
        "status": "ok", "equal_steps": k_equal, "equal_success_rate": equal_success_rate,
        "equal_seconds": times["equal"], "equal_images_per_s": n / equal, "equal_steps_per_s": n * k_equal / equal,
        "engine_equal_seconds": times["engine equal"], "engine_equal_images_per_s": n / engine_equal,
        "engine_equal_steps_per_s": budget.stats.evaluations / engine_equal,
        "equal_ratio": equal / engine_equal,
        "equal_ratio_per_evaluation": (budget.stats.evaluations / engine_equal) / (n * k_equal / equal),
        "success_steps": k_success, "success_rate": rate, "tried": tried, "success_seconds": times["success"],
        "success_images_per_s": n / median(times["success"]),
        "success_ratio": median(times["success"]) / median(times["engine"]), "engine_seconds": times["engine"],
    }


# --- Throughput against batch size -------------------------------------------------------------------------


@dataclass
class Throughput:
    """Image-steps per second of the compiled step per batch size, per model; XLA against graph (or None)."""

    rates: dict[str, dict[int, float]]
    xla: dict[str, Any] | None

    def record(self) -> dict[str, dict[str, float]]:
        return {arch: {str(b): v for b, v in rates.items()} for arch, rates in self.rates.items()}

    def glued(self) -> dict[str, str]:
        if self.xla is None:
            xla = "XLA (`jit_compile=True`) was not compared in this profile"
        else:
            factor = self.xla["xla_over_graph"]
            xla = (f"With XLA (`jit_compile=True`) the same step took {factor:.1f}× the time of TensorFlow's graph "
                   "kernels on this CPU, so the engine does not use it" if factor > 1 else
                   f"With XLA (`jit_compile=True`) the same step took {factor:.2f}× the time of TensorFlow's graph kernels: "
                   "XLA would pay on this machine")
        return {"batch_sentences": "; ".join(_batch_sentence(a, r) for a, r in self.rates.items()), "xla_sentence": xla}

    def figure(self) -> Figure:
        """Image-steps/s against batch size (log scale), one panel per model; the chapter's batch is dotted."""
        fig = Figure(figsize=(8.4, 3.2), layout="constrained")
        for ax, (arch, rates) in zip(fig.subplots(1, len(self.rates), squeeze=False)[0], self.rates.items(), strict=True):
            ax.plot(list(rates), list(rates.values()), marker="o")
            if ATTACK_BATCH in rates:
                ax.axvline(ATTACK_BATCH, color="tab:gray", ls=":", lw=1)
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(rates), labels=[str(b) for b in rates])
            ax.minorticks_off()
            ax.set_ylim(bottom=0)
            ax.set_xlabel("batch size")
            ax.set_ylabel("image-steps / s")
            ax.set_title(arch, fontsize=10)
            ax.grid(alpha=0.3)
        return fig


def _batch_sentence(arch: str, rates: Mapping[int, float]) -> str:
    best = max(rates, key=rates.get)
    if len(rates) == 1:
        return f"{arch} was timed at one batch size only ({best})"
    if best < max(rates):
        return (f"{arch}'s step rate peaks at a batch of {best} and falls at larger batches, whose activations no "
                "longer fit in the CPU's caches")
    return f"{arch}'s step rate is highest at the largest batch tried, {best}"


def batch_throughput(
    model: keras.Model, inception: keras.Model, *, study_arch: str, batch_sizes: Sequence[int], inception_batch: int,
    repeats: int, compare_backends: bool, seed: int = 0,
) -> Throughput:
    """Step throughput of the study model ``model`` (named ``study_arch``) at every ``batch_sizes`` and of
    ``inception`` (one step per call) at those up to ``inception_batch``; and, if ``compare_backends``, the study
    model's step with XLA against TensorFlow's graph at the chapter's batch."""
    inception_batch = check_int("inception_batch", inception_batch, minimum=1)
    if not isinstance(compare_backends, bool):
        raise TypeError(f"compare_backends: expected True or False, got {compare_backends!r}")
    inception_sizes = sorted({b for b in batch_sizes if b <= inception_batch} | {inception_batch})
    # The study model keeps its architecture's name unless it is InceptionV3 too (the paper profile's study).
    study_name = study_arch if study_arch != "inception_v3" else f"{study_arch} (study, {model.input_shape[1]} px)"
    rates = {
        study_name: step_throughput(model, sorted(set(batch_sizes)), repeats=repeats),
        "inception_v3": step_throughput(inception, inception_sizes, repeats=repeats, steps=1),
    }
    xla = xla_against_graph(model, batch=ATTACK_BATCH, repeats=repeats, seed=seed) if compare_backends else None
    return Throughput(rates, xla)


# --- GFLOP/s and the op profile ----------------------------------------------------------------------------


@dataclass
class KernelRates:
    """GFLOP/s of ``tf.matmul`` and of both models' attack steps (this process, and with the other oneDNN
    setting in a child process when measured), and the op profile of each model's step."""

    study_arch: str
    inception_size: int
    inception_batch: int
    kernel: dict[str, Any]
    profile_rows: list[dict[str, Any]]
    other: dict[str, Any] | None
    inception_step_flops: int
    study_step_flops: int

    @property
    def share(self) -> float:
        """InceptionV3's step rate as a share of ``tf.matmul``'s."""
        return self.kernel["gflops"]["inception_v3"] / self.kernel["gflops"]["matmul"]

    def inception_op(self, suffix: str) -> dict[str, Any] | None:
        """The first (largest) InceptionV3 profile row whose op type ends with ``suffix``."""
        return next((r for r in self.profile_rows if r["model"] == "inception_v3" and r["op"].endswith(suffix)), None)

    def record(self) -> dict[str, Any]:
        return {
            "inception_image_size": self.inception_size, "inception_batch": self.inception_batch,
            "inception_step_gflop_per_image": self.inception_step_flops / 1e9, "this_process": self.kernel,
            "inception_share_of_matmul": self.share, "op_profile": self.profile_rows, "other_onednn_setting": self.other,
        }

    def table(self) -> Styler:
        """GFLOP/s per oneDNN setting (this process, and the child's if measured)."""
        rows = [{"oneDNN": "on" if self.kernel["onednn"] else "off", "process": "this one", **self.kernel["gflops"]}]
        if self.other and "gflops" in self.other:
            rows.append({"oneDNN": "on" if self.other["onednn"] else "off", "process": "child", **self.other["gflops"]})
        names = {"matmul": "tf.matmul", "inception_v3": "InceptionV3 step", "small_cnn": "small CNN step"}
        return pd.DataFrame(rows).rename(columns=names).style.format(precision=1).hide(axis="index")

    def profile_table(self) -> Styler:
        return pd.DataFrame(self.profile_rows).style.format(precision=1, na_rep="—").hide(axis="index")

    def glued(self) -> dict[str, Any]:
        gflops, nan = self.kernel["gflops"], float("nan")
        conv, grad = self.inception_op("Conv2D"), self.inception_op("Conv2DBackpropInput")
        return {
            "inception_gflops": gflops["inception_v3"], "matmul_gflops": gflops["matmul"], "small_gflops": gflops["small_cnn"],
            "inception_share": self.share * 100, "inception_step_gflop": self.inception_step_flops / 1e9,
            "conv_share": conv["share of op time %"] if conv else nan,
            "conv_gflops": conv["GFLOP/s"] if conv and conv["GFLOP/s"] else nan,
            "grad_share": grad["share of op time %"] if grad else nan,
            "small_profile_sentence": self._small_profile_sentence(),
            "grad_gflops": grad["GFLOP/s"] if grad and grad["GFLOP/s"] else nan,
            "onednn_sentence": self._onednn_sentence(),
        }

    def _small_profile_sentence(self) -> str:
        top = next((r for r in self.profile_rows if r["model"] == self.study_arch), None)
        if top is None:
            return "its profile is empty"
        memory = " (the gradient of max-pooling, which moves memory and does no arithmetic)" if top["op"].endswith("MaxPoolGrad") else ""
        return f"its largest share of op time, {top['share of op time %']:.0f} %, went to `{top['op']}`" + memory

    def _onednn_sentence(self) -> str:
        if self.other and "gflops" in self.other:
            other = self.other["gflops"]
            return (
                f"A child process with oneDNN {'on' if self.other['onednn'] else 'off'} ran the InceptionV3 step at "
                f"{other['inception_v3']:.1f} GFLOP/s, {other['inception_v3'] / self.kernel['gflops']['inception_v3']:.2f}× this "
                f"process's rate and {100 * other['inception_v3'] / other['matmul']:.0f} % of its own `tf.matmul` rate "
                f"({other['matmul']:.1f} GFLOP/s)")
        if self.other:
            return f"The child process with the other oneDNN setting failed: {self.other['error']}"
        return "The other oneDNN setting was not measured in this profile"


def op_profile_rows(models: Sequence[tuple[str, keras.Model, int]], *, seed: int = 0, top: int = 6) -> list[dict[str, Any]]:
    """For each (name, model, batch), the ``top`` op types of its compiled attack step by time: share of op time,
    ms per step, and for convolutions (forward and input-gradient, each doing the conv layers' arithmetic
    once) the GFLOP/s they reached."""
    top = check_int("top", top, minimum=1)
    rows = []
    for arch, net, batch in models:
        conv_flops = forward_flops(net, dense=False) * batch
        f, (x, t) = gradient_step(net), random_batch(net, batch, seed=seed)
        op_seconds = op_time_profile(lambda f=f, x=x, t=t: f(x, t))
        total = sum(op_seconds.values()) or float("nan")
        for op, seconds in sorted(op_seconds.items(), key=lambda kv: -kv[1])[:top]:
            base = op.removeprefix("_MklNative").removeprefix("_Mkl").removeprefix("_Fused")
            conv = base in ("Conv2D", "Conv2DBackpropInput")
            rate = conv_flops / seconds / 1e9 if conv and seconds > 0 else None
            rows.append({"model": arch, "op": op, "share of op time %": 100 * seconds / total,
                         "ms per step": 1e3 * seconds, "GFLOP/s": rate})
    return rows


def kernel_measurements(
    model: keras.Model, inception: keras.Model, *, study_arch: str, inception_size: int, inception_batch: int,
    repeats: int, compare_backends: bool, onednn: bool | None, seed: int = 0,
) -> KernelRates:
    """:func:`helpers.flops.kernel_rates` on the study model and ``inception``, their op profiles, and (if
    ``compare_backends``) the rates with the other oneDNN setting in a child process (its failure is reported)."""
    if not isinstance(compare_backends, bool):
        raise TypeError(f"compare_backends: expected True or False, got {compare_backends!r}")
    kernel = kernel_rates(batch=inception_batch, small_batch=ATTACK_BATCH, repeats=repeats, inception=inception, small=model)
    rows = op_profile_rows([("inception_v3", inception, inception_batch), (study_arch, model, ATTACK_BATCH)], seed=seed)
    other = None
    if compare_backends:
        try:
            other = kernel_rates_in_child(
                onednn=not onednn, image_size=inception_size, batch=inception_batch,
                small_shape=list(model.input_shape[1:]), repeats=repeats,
            )
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            other = {"error": str(error)[:200]}
    return KernelRates(study_arch, inception_size, inception_batch, kernel, rows, other,
                       attack_step_flops(inception), attack_step_flops(model))


# --- The defence's cost in training ------------------------------------------------------------------------


@dataclass
class FilterCosts:
    """Seconds per training step of each variant (:func:`helpers.filter_costs.training_step_times`) and of the
    two ways to write the Gaussian blur."""

    batch_size: int
    seconds: dict[str, list[float]]
    blur_seconds: dict[str, list[float]]

    @property
    def base(self) -> float:
        """Median seconds of a training step without a filter."""
        return median(self.seconds["none"])

    def extra(self) -> dict[str, float]:
        """Each variant's median step time over the unfiltered one, minus 1."""
        return {k: median(v) / self.base - 1 for k, v in self.seconds.items()}

    def record(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "seconds_per_step": self.seconds, "extra": self.extra(),
                "gaussian_depthwise_over_matrix": median(self.blur_seconds["depthwise"]) / median(self.blur_seconds["matrix"])}

    def glued(self) -> dict[str, float]:
        extra = self.extra()
        values = {}
        for spec, name in TRAINING_GLUE.items():
            values[f"{name}_layer_extra"] = 100 * extra[f"layer {spec}"]
            values[f"{name}_scipy_extra"] = 100 * extra[f"scipy {spec}"]
        return values | {"train_step_ms": 1e3 * self.base, "depthwise_factor": self.record()["gaussian_depthwise_over_matrix"]}

    def table(self) -> Styler:
        base = self.base
        rows = [{"training step": "no filter", "ms": 1e3 * base, "extra %": 0.0}]
        for spec in TRAINING_DEFENCES:
            for where in ("layer", "scipy"):
                t = median(self.seconds[f"{where} {spec}"])
                how = "layer in the model" if where == "layer" else "scipy.ndimage in the input pipeline"
                rows.append({"training step": f"{Defence.parse(spec).label}, {how}", "ms": 1e3 * t, "extra %": 100 * (t / base - 1)})
        return pd.DataFrame(rows).style.format({"ms": "{:.1f}", "extra %": "{:+.1f}"}).hide(axis="index")


def filter_training_costs(
    arch: str, images: np.ndarray, labels: np.ndarray, *, num_classes: int, batch_size: int, n_batches: int,
    repeats: int, seed: int = 0,
) -> FilterCosts:
    """Training steps of ``arch`` with each of :data:`TRAINING_DEFENCES` as a layer and in the input pipeline, and
    the Gaussian layer's blur against a depthwise convolution on one batch, ``repeats`` rounds each. A training
    set smaller than ``batch_size`` (a small image folder) is timed in batches of all its images."""
    batch_size = min(check_int("batch_size", batch_size, minimum=1), len(images))
    seconds = training_step_times(
        arch, images, labels, defences=list(TRAINING_DEFENCES), num_classes=num_classes,
        batch_size=batch_size, n_batches=n_batches, repeats=repeats, seed=seed,
    )
    blur = gaussian_blur_times(images[:batch_size], sigma=BLUR_SIGMA, repeats=repeats)
    return FilterCosts(batch_size, seconds, blur)


# --- The live slider's assets ------------------------------------------------------------------------------

# The chapters with a live slider (their executed notebooks, under the repository root) and the weights files they
# write (helpers.paths.live_slider_dir()).
SLIDER_PAGES = {"Gaussian": "book/executed/02_gaussian.ipynb", "median": "book/executed/03_median.ipynb"}
SLIDER_LIMIT_MB = 2.0  # what the slider may add to a page before it is ready


@dataclass
class SliderAssets:
    """What the live slider adds to each page (:func:`helpers.browser_slider.page_assets`) and how long a
    standalone copy of it takes to be ready in Chromium (:func:`helpers.browser_slider.first_render_seconds`)."""

    pages: dict[str, PageAssets]
    renders: dict[str, FirstRender]

    def first_load_mb(self) -> dict[str, float]:
        return {label: assets.first_load_bytes / 1e6 for label, assets in self.pages.items()}

    def record(self) -> dict[str, Any]:
        return {"limit_mb": SLIDER_LIMIT_MB} | {label: asdict(assets) | {
            "first_load_bytes": assets.first_load_bytes, "every_model_bytes": assets.every_model_bytes,
            "first_render_seconds": list(self.renders[label].runs), "first_render_median": self.renders[label].seconds,
            "first_render_note": self.renders[label].reason} for label, assets in self.pages.items()}

    def glued(self) -> dict[str, Any]:
        render = self._render_sentence()
        return {"slider_sizes_sentence": self._sizes_sentence(), "slider_render_sentence": render[:1].upper() + render[1:]}

    def _sizes_sentence(self) -> str:
        parts = []
        for label, assets in self.pages.items():
            mb = assets.first_load_bytes / 1e6
            verdict = "under" if mb <= SLIDER_LIMIT_MB else "over"
            share = 100 * assets.first_model_bytes / assets.first_load_bytes
            parts.append(f"the {label} page loads {mb:.2f} MB before its slider is ready ({share:.0f} % of it the first "
                         f"model's weights), {verdict} the {SLIDER_LIMIT_MB:g} MB limit, and "
                         f"{assets.every_model_bytes / 1e6:.1f} MB once a reader has visited "
                         f"{'both' if assets.n_models == 2 else f'all {assets.n_models}'} of its models")
        return "; ".join(parts)

    def _render_sentence(self) -> str:
        parts = []
        for label, render in self.renders.items():
            if render.seconds is None:
                parts.append(f"the {label} page's first render was not measured ({render.reason})")
            else:
                runs = len(render.runs)
                parts.append(f"the {label} page's slider was ready {render.seconds:.2f} s after navigation started "
                             f"({'one load' if runs == 1 else f'median of {runs} loads'})")
        return "; ".join(parts)

    def table(self) -> Styler:
        rows = [{"page": label, "models": assets.n_models,
                 "bundle + state (kB)": (assets.script_bytes + assets.state_bytes) / 1e3,
                 "first model (MB)": assets.first_model_bytes / 1e6, "first load (MB)": assets.first_load_bytes / 1e6,
                 "every model visited (MB)": assets.every_model_bytes / 1e6,
                 "first render (s)": self.renders[label].seconds} for label, assets in self.pages.items()]
        return pd.DataFrame(rows).style.format({"bundle + state (kB)": "{:.0f}", "first model (MB)": "{:.2f}",
                                                "first load (MB)": "{:.2f}", "every model visited (MB)": "{:.1f}",
                                                "first render (s)": "{:.2f}"}, na_rep="not measured").hide(axis="index")


def slider_assets(
    *, pages: Mapping[str, str | os.PathLike[str]] = SLIDER_PAGES, models_dir: str | os.PathLike[str] | None = None,
    repeats: int, measure_render: bool = True,
) -> SliderAssets:
    """Each page's slider assets, from its executed notebook (relative paths are under the repository root) and the
    weights files in ``models_dir`` (default ``data/live-slider/``), and (if ``measure_render``) the median of
    ``repeats`` first renders of its slider in Chromium."""
    if not isinstance(pages, Mapping) or not pages:
        raise TypeError(f"pages: expected a mapping of page labels to executed notebooks, got {pages!r}")
    repeats = check_int("repeats", repeats, minimum=1)
    if not isinstance(measure_render, bool):
        raise TypeError(f"measure_render: expected True or False, got {measure_render!r}")
    models_dir = paths.live_slider_dir() if models_dir is None else models_dir
    assets, renders = {}, {}
    for label, notebook in pages.items():
        cell = slider_cell_html(paths.root() / notebook)
        assets[label] = page_assets(cell, models_dir=models_dir)
        renders[label] = (first_render_seconds(cell, models_dir=models_dir, repeats=repeats) if measure_render
                          else FirstRender((), "not asked for"))
    return SliderAssets(assets, renders)


# --- The run log, the goals and the document ---------------------------------------------------------------


def run_log_view(rows: Sequence[Mapping[str, Any]]) -> Styler:
    """The run log's table (:func:`helpers.runlog.run_log_table`), or a note when there is no log yet."""
    table = run_log_table(rows)
    if len(table):
        return table.style.format(precision=0, na_rep="—")
    return pd.DataFrame({"note": ["no run log yet: run the book with scripts/run_book.py"]}).style.hide(axis="index")


ENGINE_CEILING_GOAL = 85  # % of the study model's forward+backward rate that a full attack should reach


def engine_ceiling(engine: EngineRun) -> dict[str, float] | None:
    """The engine's image-steps/s on the chapter's workload as a share of its ceiling: the same model's compiled
    forward+backward rate at the engine's full working batch, timed in the same rounds (``None`` if not timed)."""
    if not engine.ceiling_seconds:
        return None
    ceiling = engine.ceiling_batch * engine.ceiling_steps / median(engine.ceiling_seconds)
    steps_per_s = engine.record()["steps_per_s"]
    return {"share": 100 * steps_per_s / ceiling, "batch": engine.ceiling_batch, "ceiling": ceiling,
            "steps_per_s": steps_per_s, "mean_width": float(np.mean(engine.stats.widths)), "width": max(engine.stats.widths)}


def goal_rows(
    engine: EngineRun, seed_loop: SeedLoopRun, libraries: LibraryComparison, kernels: KernelRates, filters: FilterCosts,
    slider: SliderAssets, peers: PeerComparison | None = None,
) -> list[dict[str, Any]]:
    """The chapter's goals, what this run measured, whether each is met, and a note explaining each missed one."""
    art, fool = libraries.libraries.get("art", {}), libraries.libraries.get("foolbox", {})
    extra = filters.extra()
    goals = [
        goal_row("attack to success vs the seed loop (×)", seed_loop.record()["ratio"], at_least=SEED_LOOP_GOAL),
        goal_row("vs ART, run to the same success (×)", art.get("success_ratio"), at_least=6),
        goal_row("vs Foolbox, run to the same success (×)", fool.get("success_ratio"), at_least=6),
        goal_row("vs ART at equal steps (×)", art.get("equal_ratio"), at_least=3),
        goal_row("vs Foolbox at equal steps (×)", fool.get("equal_ratio"), at_least=3),
        goal_row("InceptionV3 step, % of tf.matmul GFLOP/s", 100 * kernels.share, at_least=60),
        goal_row("Gaussian layer, extra % per training step", 100 * extra["layer gaussian:1.5"], at_most=5),
        goal_row("median 3×3 layer, extra % per training step", 100 * extra["layer median:3"], at_most=20),
        goal_row("live slider, first load per page (MB)", max(slider.first_load_mb().values()), at_most=SLIDER_LIMIT_MB),
    ]
    ceiling = engine_ceiling(engine)
    goals.append(goal_row("attack engine, % of the same model's forward+backward rate", ceiling and ceiling["share"],
                          at_least=ENGINE_CEILING_GOAL))
    why = _missed_goal_notes(engine, seed_loop, (art, fool), kernels, filters, slider)
    if ceiling:
        why[9] = (f"{ceiling['steps_per_s']:.0f} image-steps/s against {ceiling['ceiling']:.0f} at its full batch of {ceiling['batch']}: "
                  f"the working batch starts at {ceiling['width']} images and shrinks as they finish (mean width "
                  f"{ceiling['mean_width']:.0f}), and a small batch runs far below the full one")
    if peers is not None:
        for name, ratio, met, note in peers.goal_rows():
            row = goal_row(name, ratio, at_least=PEER_GOAL)
            if met is not None:
                row["met"] = met  # a faster run of lower quality does not count
            why[len(goals)] = note
            goals.append(row)
    for i, goal in enumerate(goals):
        if goal["met"] is None:
            goal["note"] = "not measured (library not installed or failed)"
        elif not goal["met"]:
            goal["note"] = why.get(i) or "see its section"
        else:
            goal["note"] = ""
    return goals


def _missed_goal_notes(
    engine: EngineRun, seed_loop: SeedLoopRun, libraries: tuple[dict[str, Any], dict[str, Any]], kernels: KernelRates,
    filters: FilterCosts, slider: SliderAssets,
) -> dict[int, str]:
    """What the measurements say about each goal, by its index in :func:`goal_rows` (shown when it is missed)."""
    seed_step_s = seed_loop.step_seconds
    needed_sps = SEED_LOOP_GOAL / seed_step_s
    small_rows = [r for r in kernels.profile_rows if r["model"] == kernels.study_arch]
    grad_row = kernels.inception_op("Conv2DBackpropInput")
    spread = {k: (min(v) / median(v), max(v) / median(v)) for k, v in filters.seconds.items()}
    art, fool = libraries
    mean_steps = engine.result.steps.mean()
    return {
        0: (f"the eager loop's step takes {1e3 * seed_step_s:.1f} ms, so {SEED_LOOP_GOAL}× needs {needed_sps:.0f} image-steps/s "
            f"= {needed_sps * kernels.study_step_flops / 1e9:.0f} GFLOP/s from the engine; its step ran at "
            f"{kernels.kernel['gflops']['small_cnn']:.0f} GFLOP/s, and at {seed_loop.n} images its batch is not full"
            + (f"; top op: {small_rows[0]['op']} {small_rows[0]['share of op time %']:.0f} %" if small_rows else "")),
        1: _library_note(art, "success", mean_steps),
        2: _library_note(fool, "success", mean_steps),
        3: _library_note(art, "equal", mean_steps),
        4: _library_note(fool, "equal", mean_steps),
        5: (f"input-gradient convolutions: {grad_row['share of op time %']:.0f} % of op time at {grad_row['GFLOP/s']:.1f} GFLOP/s"
            if grad_row and grad_row["GFLOP/s"] else "see the op profile"),
        6: (f"{1e3 * (median(filters.seconds['layer gaussian:1.5']) - filters.base):.1f} ms per step; single steps ranged "
            f"{spread['none'][0]:.2f}–{spread['none'][1]:.2f}× their median"),
        7: (f"{1e3 * (median(filters.seconds['layer median:3']) - filters.base):.1f} ms per step for the median's min/max network "
            "(column sorts shared between neighbouring windows, then opt_med9's last ten comparators)"),
        8: _slider_note(slider),
    }


def _slider_note(slider: SliderAssets) -> str:
    label, assets = max(slider.pages.items(), key=lambda item: item[1].first_load_bytes)
    return (f"the {label} page: bundle {assets.script_bytes / 1e3:.0f} kB, slider HTML and state "
            f"{assets.state_bytes / 1e3:.0f} kB, first model's weights {assets.first_model_bytes / 1e6:.2f} MB")


def _library_note(row: Mapping[str, Any], kind: str, engine_mean_steps: float) -> str:
    if row.get("status") != "ok":
        return ""
    if kind == "success":
        return (f"it needs {row['success_steps']} steps on every image (engine: {engine_mean_steps:.0f} on average) "
                f"and is {row['equal_ratio']:.1f}× slower per step")
    return (f"{row['equal_steps_per_s']:.0f} image-steps/s against the engine's {row['engine_equal_steps_per_s']:.0f} "
            f"(per evaluation {row['equal_ratio_per_evaluation']:.1f}×): on this small model the eager step costs little "
            "more than the compiled one, and the engine's last images run in a small batch")


def goals_table(goals: Sequence[Mapping[str, Any]]) -> Styler:
    return pd.DataFrame(list(goals)).replace({"met": {True: "yes", False: "no", None: "—"}}).style.format(
        {"measured": lambda v: f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"}, na_rep="—").hide(axis="index")


def benchmark_document(
    *, profile: str, machine: Mapping[str, Any], versions: Mapping[str, str | None], engine: EngineRun,
    seed_loop: SeedLoopRun, libraries: LibraryComparison, throughput: Throughput, kernels: KernelRates,
    filters: FilterCosts, slider: SliderAssets, run_log: Sequence[Mapping[str, Any]], goals: Sequence[Mapping[str, Any]],
    peers: PeerComparison | None = None,
) -> dict[str, Any]:
    """Everything the chapter measured, for :data:`helpers.results.BENCHMARK` (the load average read now)."""
    return {
        "profile": profile, "machine": dict(machine), "libraries": dict(versions), "engine": engine.record(),
        "seed_loop": seed_loop.record(), "libraries_compared": libraries.libraries,
        "engine_equal_budget": libraries.record_budget(), "batch_throughput": throughput.record(), "xla": throughput.xla,
        "gflops": kernels.record(), "training_filters": filters.record(), "live_slider": slider.record(), "run_log": [dict(r) for r in run_log],
        "peers": peers.record() if peers is not None else None, "goals": [dict(g) for g in goals],
        "load_average_end": load_average(),
    }


def document_glued(document: Mapping[str, Any]) -> dict[str, Any]:
    """How many goals were met and measured, and the load average at the end."""
    goals, load = document["goals"], document["load_average_end"]
    return {"goals_met": sum(1 for g in goals if g["met"]), "goals_measured": sum(1 for g in goals if g["met"] is not None),
            "load_end": load if load is not None else float("nan")}
