"""The performance chapter (``notebooks/08_performance``): its goals and its JSON document, and every section.

The sections live in :mod:`helpers.bench.engine_runs` (the engine, the seed's loop), :mod:`helpers.bench.library_runs`
(ART and Foolbox, throughput against the batch size) and :mod:`helpers.bench.kernel_runs` (GFLOP/s and the op profile,
the filters' training cost, the live slider's assets); the chapter imports them all from here. Each section runs its
measurements with :mod:`helpers.bench.timing`, :mod:`helpers.bench.reference_attacks`, :mod:`helpers.bench.flops`,
:mod:`helpers.bench.filter_costs` and :mod:`helpers.book.browser_slider`, and returns a small dataclass holding them, with

* ``record()`` — what the section adds to ``benchmark.json`` (:data:`helpers.studies.results.BENCHMARK`);
* ``glued()`` — the numbers and sentences the chapter's prose shows, by glue name;
* ``table()`` / ``figure()`` where the section shows one.

:func:`goal_rows` compares the measurements with the chapter's goals and explains each missed one;
:func:`benchmark_document` assembles the JSON document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

# The chapter imports every section from here.
from helpers.bench.bfloat16_runs import Bfloat16Mode, bfloat16_mode  # noqa: F401
from helpers.bench.engine_runs import (  # noqa: F401
    ATTACK_BATCH,
    BLUR_SIGMA,
    ENGINE_CEILING_GOAL,
    SEED_LOOP_GOAL,
    TRAINING_DEFENCES,
    TRAINING_GLUE,
    EngineRun,
    SeedLoopRun,
    engine_ceiling,
    engine_replay_rounds,
    engine_run,
    engine_share_rounds,
    machine_glued,
    retrace_sentence,
    retraced_seconds,
    seed_loop_run,
)
from helpers.bench.kernel_runs import (  # noqa: F401
    SLIDER_LIMIT_MB,
    SLIDER_PAGES,
    FilterCosts,
    KernelRates,
    SliderAssets,
    filter_training_costs,
    kernel_measurements,
    op_profile_rows,
    slider_assets,
)
from helpers.bench.library_runs import (  # noqa: F401
    Budget,
    LibraryComparison,
    Throughput,
    batch_throughput,
    compare_library,
    library_comparison,
)
from helpers.bench.peers import PEER_GOAL, PeerComparison
from helpers.bench.timing import SHORT_ROUNDS, goal_row, load_average, median, paired_ratios, with_previous  # noqa: F401
from helpers.book.runlog import run_log_table
from helpers.studies.results import BENCHMARK

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler


# --- The run log, the goals and the document ---------------------------------------------------------------


def run_log_view(rows: Sequence[Mapping[str, Any]]) -> Styler:
    """The run log's table (:func:`helpers.book.runlog.run_log_table`), or a note when there is no log yet."""
    table = run_log_table(rows)
    if len(table):
        return table.style.format(precision=0, na_rep="—")
    return pd.DataFrame({"note": ["no run log yet: run the book with scripts/run_book.py"]}).style.hide(axis="index")


def goal_rows(
    engine: EngineRun, seed_loop: SeedLoopRun, libraries: LibraryComparison, kernels: KernelRates, filters: FilterCosts,
    slider: SliderAssets, peers: PeerComparison | None = None,
) -> list[dict[str, Any]]:
    """The chapter's goals, what this run measured, whether each is met, and a note explaining each missed one."""
    art, fool = libraries.libraries.get("art", {}), libraries.libraries.get("foolbox", {})
    per_step = filters.seconds
    goals = [
        goal_row("attack to success vs the seed loop (×)", paired_ratios(seed_loop.seconds, seed_loop.engine_seconds),
                 at_least=SEED_LOOP_GOAL),
        goal_row("vs ART, run to the same success (×)", _rounds(art, "success_seconds", "engine_seconds"), at_least=6),
        goal_row("vs Foolbox, run to the same success (×)", _rounds(fool, "success_seconds", "engine_seconds"), at_least=6),
        goal_row("vs ART at equal steps (×)", _rounds(art, "equal_seconds", "engine_equal_seconds"), at_least=3),
        goal_row("vs Foolbox at equal steps (×)", _rounds(fool, "equal_seconds", "engine_equal_seconds"), at_least=3),
        goal_row(f"InceptionV3 step at {kernels.goal_size} px, % of tf.matmul GFLOP/s", [100 * v for v in kernels.share_rounds()],
                 at_least=60),
        goal_row("Gaussian layer, extra % per training step",
                 [100 * (r - 1) for r in paired_ratios(per_step["layer gaussian:1.5"], per_step["none"])], at_most=5),
        goal_row("median 3×3 layer, extra % per training step",
                 [100 * (r - 1) for r in paired_ratios(per_step["layer median:3"], per_step["none"])], at_most=20),
        goal_row("live slider, first load per page (MB)", max(slider.first_load_mb().values()), at_most=SLIDER_LIMIT_MB),
    ]
    ceiling = engine_ceiling(engine)
    goals.append(goal_row("attack engine, % of the speed of its own forward+backward passes", engine_replay_rounds(engine),
                          at_least=ENGINE_CEILING_GOAL))
    why = _missed_goal_notes(engine, seed_loop, (art, fool), kernels, filters, slider)
    if ceiling:
        why[9] = (f"the same passes alone took {median(engine.replay_seconds):.3f} s and the engine {median(engine.seconds):.3f} s: "
                  "the rest is its bookkeeping. " + engine.contention_sentence())
    if peers is not None:
        for name, rounds, as_strong, note in peers.goal_rows():
            row = goal_row(name, rounds, at_least=PEER_GOAL)
            if row["met"] is not None and as_strong is not None:
                row["met"] = row["met"] and as_strong  # a faster run of lower quality does not count
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


def _rounds(row: Mapping[str, Any], numerator: str, denominator: str) -> list[float] | None:
    """A library's per-round ratio (its seconds over the engine's, round by round), ``None`` when it did not run."""
    return paired_ratios(row[numerator], row[denominator]) if row.get("status") == "ok" else None


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


def previous_goals(profile: str) -> list[dict[str, Any]] | None:
    """The goal rows of the previous run of this chapter in the same profile (its ``benchmark.json``), or ``None``."""
    if not BENCHMARK.path.exists():
        return None
    try:
        document = BENCHMARK.read()
    except (OSError, ValueError):
        return None
    return document.get("goals") if document.get("profile") == profile else None


CHANGED_MARK = "⚠"  # the goals table's mark on a previous value outside this run's interval


def goals_table(goals: Sequence[Mapping[str, Any]]) -> Styler:
    """Each goal's target, median with its interval and number of rounds, verdict and the previous run's value (marked
    when outside this run's interval); :func:`missed_goals_table` has the notes."""
    def number(v: float | None) -> str:
        text = "—" if v is None else f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
        return text.replace("-", "−")

    rows = []
    for g in goals:
        measured = number(g["measured"])
        if g.get("rounds", 0) > 1:
            measured += f" [{number(g['low'])}, {number(g['high'])}] ({g['rounds']})"
        last = g.get("previous")
        rows.append({"goal": g["goal"], "target": g["target"], "median [interval] (rounds)": measured,
                     "met": {True: "yes", False: "no", None: "—"}[g["met"]],
                     "previous run": "—" if last is None else number(last) + (f" {CHANGED_MARK}" if g.get("changed") else "")})
    return pd.DataFrame(rows).style.hide(axis="index")


def missed_goals_table(goals: Sequence[Mapping[str, Any]]) -> Styler:
    """Each goal that is missed or not measured, and what the measurements say about why."""
    rows = [{"goal": g["goal"], "why": g.get("note", "")} for g in goals if not g["met"]]
    if not rows:
        rows = [{"goal": "every measured goal is met", "why": ""}]
    return pd.DataFrame(rows).style.hide(axis="index")


def benchmark_document(
    *, profile: str, machine: Mapping[str, Any], versions: Mapping[str, str | None], engine: EngineRun,
    seed_loop: SeedLoopRun, libraries: LibraryComparison, throughput: Throughput, kernels: KernelRates,
    filters: FilterCosts, slider: SliderAssets, run_log: Sequence[Mapping[str, Any]], goals: Sequence[Mapping[str, Any]],
    peers: PeerComparison | None = None, bfloat16: Bfloat16Mode | None = None,
) -> dict[str, Any]:
    """Everything the chapter measured, for :data:`helpers.studies.results.BENCHMARK` (the load average read now)."""
    return {
        "profile": profile, "machine": dict(machine), "libraries": dict(versions), "engine": engine.record(),
        "seed_loop": seed_loop.record(), "libraries_compared": libraries.libraries,
        "engine_equal_budget": libraries.record_budget(), "batch_throughput": throughput.record(), "xla": throughput.xla,
        "gflops": kernels.record(), "training_filters": filters.record(), "live_slider": slider.record(), "run_log": [dict(r) for r in run_log],
        "peers": peers.record() if peers is not None else None, "goals": [dict(g) for g in goals],
        "bfloat16": bfloat16.record() if bfloat16 is not None else None,
        "load_average_end": load_average(),
    }


def document_glued(document: Mapping[str, Any]) -> dict[str, Any]:
    """How many goals were met and measured, and the load average at the end."""
    goals, load = document["goals"], document["load_average_end"]
    compared = [g for g in goals if g.get("changed") is not None]
    moved = [g["goal"] for g in compared if g["changed"]]
    if not compared and any(g.get("previous") is not None for g in goals):
        sentence = "With one round per goal there is no spread to judge the previous run's values by"
    elif not compared:
        sentence = "There is no previous run of this chapter in this profile to compare with"
    elif not moved:
        sentence = (f"Against the previous run of this chapter, every one of the {len(compared)} goals measured in both "
                    "lies inside this run's interval")
    else:
        sentence = (f"Against the previous run of this chapter, {len(moved)} of the {len(compared)} goals measured in both "
                    f"moved by more than this run's spread (marked {CHANGED_MARK}): {'; '.join(moved)}")
    return {"goals_met": sum(1 for g in goals if g["met"]), "goals_measured": sum(1 for g in goals if g["met"] is not None),
            "load_end": load if load is not None else float("nan"), "goals_previous_sentence": sentence}
