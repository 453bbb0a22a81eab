"""The performance chapter's library sections: the engine against IBM ART and Foolbox on the same model, images
and targets (to the same success and at equal steps), and its throughput against the batch size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from helpers.attacks.attack import AttackResult, EngineStats, run_engine, targeted_attack
from helpers.bench.engine_runs import ATTACK_BATCH, EngineRun
from helpers.bench.flops import (
    step_throughput,
    xla_against_graph,
)
from helpers.bench.reference_attacks import (
    LIBRARIES,
    LIBRARY_LABELS,
    library_attack,
    steps_for_success,
    success_rate,
)
from helpers.bench.timing import interleaved_times, median, paired_ratios, timed_call
from helpers.core.validate import check_int

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

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
    # Every contender in the same rounds, so that each round gives one ratio of each kind (the goals' intervals). The
    # engine's timed run follows an untimed one: right after the library's eager run, the same compiled calls ran up
    # to 1.5x slower for a few seconds (one build: 0.68 s in two rounds of five against 0.44-0.51 s in the others).
    times = interleaved_times(
        {"engine": lambda: targeted_attack(model, images, targets, **engine.attack_args),
         "engine equal": lambda: targeted_attack(model, images, targets, **budget.args),
         "equal": lambda: attack(images, targets, k_equal),
         "success": lambda: attack(images, targets, k_success)},
        repeats=repeats, warmup=0, settle=("engine",),
    )
    return _library_row(times, engine.n, budget, success_rate(model, adv_equal, targets), (k_success, rate, tried))


def _library_row(
    times: dict[str, list[float]], n: int, budget: Budget, equal_success_rate: float,
    search: tuple[int, float, list[tuple[int, float, float]]],
) -> dict[str, Any]:
    k_equal, (k_success, rate, tried) = budget.steps, search
    equal, engine_equal = median(times["equal"]), median(times["engine equal"])
    equal_ratio = median(paired_ratios(times["equal"], times["engine equal"]))  # ratios: the median of the rounds' ratios
    return {
        "status": "ok", "equal_steps": k_equal, "equal_success_rate": equal_success_rate,
        "equal_seconds": times["equal"], "equal_images_per_s": n / equal, "equal_steps_per_s": n * k_equal / equal,
        "engine_equal_seconds": times["engine equal"], "engine_equal_images_per_s": n / engine_equal,
        "engine_equal_steps_per_s": budget.stats.evaluations / engine_equal,
        "equal_ratio": equal_ratio,
        "equal_ratio_per_evaluation": equal_ratio * budget.stats.evaluations / (n * k_equal),
        "success_steps": k_success, "success_rate": rate, "tried": tried, "success_seconds": times["success"],
        "success_images_per_s": n / median(times["success"]),
        "success_ratio": median(paired_ratios(times["success"], times["engine"])), "engine_seconds": times["engine"],
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
            xla = "XLA (jit_compile=True) was not compared in this profile"
        else:
            factor = self.xla["xla_over_graph"]
            xla = (f"With XLA (jit_compile=True) the same step took {factor:.1f}× the time of TensorFlow's graph "
                   "kernels on this CPU, so the engine does not use it" if factor > 1 else
                   f"With XLA (jit_compile=True) the same step took {factor:.2f}× the time of TensorFlow's graph kernels: "
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
