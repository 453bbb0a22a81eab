"""The timing harness of the performance chapter (``notebooks/08_performance``): the machine, interleaved
wall-clock rounds, medians, and the rows of the goals table.

Every comparison runs in one process, on the same inputs. Contenders are timed in interleaved rounds
(A B C, A B C, ...), so that a change in the machine's load hits all of them alike, and the chapter reports
medians. These helpers measure; they never assert a speed (the tests check behaviour).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from helpers.core.validate import check_int
from helpers.training.train import onednn_enabled

SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def machine_info() -> dict[str, Any]:
    """CPU model, cores this process may use, memory, SIMD extensions, TensorFlow version and the load average."""
    model, flags = _cpu_model_and_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = float("nan")
    return {
        "cpu": model,
        "cores": cores,
        "memory_gib": round(memory, 1),
        "simd": [f for f in SIMD_FLAGS if f in flags],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn": onednn_enabled(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or cores,
        "load_average": load_average(),
    }


def _cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags from ``/proc/cpuinfo`` (Linux; elsewhere the platform's name)."""
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
    return model, flags


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), to tell how contended the cores were."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def cpu_snapshot() -> dict[str, float]:
    """Wall clock, this process's CPU seconds (its threads, not its children) and, on Linux, the machine's busy, idle
    and stolen CPU seconds over all cores (``/proc/stat``; steal: time the hypervisor gave a virtual CPU to others)."""
    own = os.times()
    snapshot = {"wall": time.perf_counter(), "own": own.user + own.system}
    try:
        fields = [float(v) / os.sysconf("SC_CLK_TCK") for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError, AttributeError):
        return snapshot
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    return snapshot | {"busy": user + nice + system + irq + softirq, "idle": idle + iowait, "steal": steal}


def contention(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """What shared the machine between two :func:`cpu_snapshot`: the share of its CPU time (all cores) that other
    processes used and that the hypervisor stole, and this process's CPU seconds per wall second (NaN off Linux)."""
    wall = after["wall"] - before["wall"]
    own = after["own"] - before["own"]
    if "busy" not in before or "busy" not in after:
        return {"others": float("nan"), "steal": float("nan"), "own_per_wall": own / wall if wall > 0 else float("nan")}
    busy, idle, steal = (after[k] - before[k] for k in ("busy", "idle", "steal"))
    total = busy + idle + steal  # /proc/stat counts in clock ticks (10 ms): a short span may show none
    own_per_wall = own / wall if wall > 0 else float("nan")
    if total <= 0:
        return {"others": float("nan"), "steal": float("nan"), "own_per_wall": own_per_wall}
    return {"others": max(0.0, busy - own) / total, "steal": steal / total, "own_per_wall": own_per_wall}


def interleaved_times(
    contenders: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int = 1, settle: Collection[str] = ()
) -> dict[str, list[float]]:
    """Wall-clock seconds of each contender, timed in ``repeats`` interleaved rounds after ``warmup`` untimed calls.

    A call's result is materialised (``.numpy()`` on tensors) before the clock stops. The contenders named in
    ``settle`` get one more untimed call right before each timed one (a compiled attack timed right after an eager
    library's run ran up to 1.5× slower for a few seconds: see :func:`helpers.bench.library_runs.compare_library`).
    """
    repeats = check_int("repeats", repeats, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    if not contenders:
        raise ValueError("contenders: need at least one callable to time")
    if isinstance(settle, str) or not set(settle) <= set(contenders):
        raise ValueError(f"settle: expected names among the contenders {sorted(contenders)}, got {settle!r}")
    for name, fn in contenders.items():
        if not callable(fn):
            raise TypeError(f"contenders: {name!r} is not callable")
        for _ in range(warmup):
            materialise(fn())
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            if name in settle:
                materialise(fn())
            start = time.perf_counter()
            materialise(fn())
            times[name].append(time.perf_counter() - start)
    return times


def timed_call(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall-clock seconds (a run whose result is needed can also be a timing sample)."""
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    start = time.perf_counter()
    value = fn()
    materialise(value)
    return value, time.perf_counter() - start


def materialise(value: Any) -> None:
    """Wait for ``value``'s computation: ``.numpy()`` on every tensor in it (nested tuples and lists too)."""
    if isinstance(value, (tuple, list)):
        for item in value:
            materialise(item)
    elif hasattr(value, "numpy"):
        value.numpy()


def median(values: Sequence[float]) -> float:
    """The median of ``values`` as a float (NaN for none)."""
    return float(statistics.median(values)) if len(values) else float("nan")


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-round ratios of two contenders timed in the same interleaved rounds (round i against round i); a
    contender timed once is set against every round of the other."""
    a, b = list(numerator), list(denominator)
    if not a or not b:
        return []
    if len(a) == 1 or len(b) == 1:
        return [x / y for x in a for y in b]
    if len(a) != len(b):
        raise ValueError(f"numerator, denominator: paired rounds need equal lengths, got {len(a)} and {len(b)}")
    return [x / y for x, y in zip(a, b, strict=True)]


MEDIAN_COVERAGE = 0.9  # the goals' intervals: at least this coverage for the median of the rounds
# Contenders that take about a second (the engine, DDN and their ceilings, the kernels) run SHORT_ROUNDS × repeats rounds.
# Their rounds vary by up to ±25 % within one run; with 5 rounds the interval of the median is the smallest and largest,
# with 15 it drops the three most extreme rounds on each side (and still covers the median with 96 % probability).
SHORT_ROUNDS = 3


def median_interval(values: Sequence[float], *, coverage: float = MEDIAN_COVERAGE) -> tuple[float, float, float]:
    """A distribution-free interval for the median of the rounds' values, from their order statistics: the k-th
    smallest and k-th largest with the largest k whose coverage, 1 − 2·P(Binomial(n, ½) < k), is at least
    ``coverage``. Returns (low, high, its coverage). Too few rounds for ``coverage``: the smallest and the largest,
    with their lower coverage (5 rounds: 94 %; 3 rounds: 75 %; 1 round: 0)."""
    x = sorted(v for v in values if math.isfinite(v))
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), 0.0
    below = [math.comb(n, i) / 2**n for i in range(n + 1)]  # P(Binomial(n, 1/2) = i)
    k, achieved = 1, 1 - 2 * below[0]
    for candidate in range(2, (n + 1) // 2 + 1):
        level = 1 - 2 * sum(below[:candidate])
        if level < coverage:
            break
        k, achieved = candidate, level
    return x[k - 1], x[n - k], max(0.0, achieved)


def goal_row(
    name: str, values: float | Sequence[float] | None, *, at_least: float | None = None, at_most: float | None = None
) -> dict[str, Any]:
    """One row of the goals table from the goal's value in each timed round (or one value, for a goal that is not a
    timing): the median, its interval (:func:`median_interval`) and whether it is met — only when the *whole* interval
    clears the target (``None``: not measured)."""
    if (at_least is None) == (at_most is None):
        raise ValueError("at_least, at_most: give exactly one of them")
    goal = f"≥ {at_least:g}" if at_least is not None else f"≤ {at_most:g}"
    rounds = [] if values is None else [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    rounds = [v for v in rounds if math.isfinite(v)]
    if not rounds:
        return {"goal": name, "target": goal, "measured": None, "low": None, "high": None, "rounds": 0, "met": None}
    low, high, _ = median_interval(rounds)
    met = low >= at_least if at_least is not None else high <= at_most
    return {"goal": name, "target": goal, "measured": median(rounds), "low": low, "high": high, "rounds": len(rounds),
            "met": bool(met)}


def with_previous(goals: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """``goals`` with the previous run's measured value of each (``previous``: its goal rows, or ``None``) and
    ``changed``: True when that value lies outside this run's interval (a change larger than the rounds' spread;
    ``None`` without a previous value or with one round, which has no spread)."""
    before = {g["goal"]: g.get("measured") for g in previous or ()}
    rows = []
    for goal in goals:
        last = before.get(goal["goal"])
        spread = goal.get("rounds", 0) > 1 and goal.get("low") is not None
        changed = not goal["low"] <= last <= goal["high"] if last is not None and spread else None
        rows.append(dict(goal) | {"previous": last, "changed": changed})
    return rows
