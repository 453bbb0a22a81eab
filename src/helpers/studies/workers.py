"""Attack jobs in worker processes, so that a chapter's attacks fill every core.

An attack on the book's small models runs batches of a few hundred digits: TensorFlow spreads one such batch over
two cores poorly (chapter 6 alone averaged 1.1 to 1.5 cores), while two processes with one thread each keep both
busy. Chapter 6 runs one job per model and seed: its PGD study, its cascade, its checks. A job is a module-level
function called as ``function(model, **kwargs)``; in a worker the model is loaded from its file (verified against
the file's SHA-256 when the jobs were handed out), and the worker's TensorFlow runs on one thread.

Where a job runs does not change what it finds: the same ops on the same weights and inputs, with the seeds the job
carries. The last bits of a perturbation may move with the thread count on some CPUs (on an AVX2-only AMD EPYC, not
on an Intel CPU with AMX), so a pair on the very edge of a budget could in principle flip. (Training depends on the
thread count far more, which is why workers only attack.)

* :class:`Job` — one call; :func:`model_job` makes one from a trained model and its file;
* :func:`run_jobs` — every job, in its order, in ``processes`` processes (1: in this process, one after the other).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from helpers.core.io import file_sha256
from helpers.core.validate import check_int


@dataclass(frozen=True)
class Job:
    """``function(model, **kwargs)``: on ``model`` in this process, on the model saved in ``model_file`` in a worker."""

    function: Callable[..., Any]
    model: keras.Model = field(repr=False)
    model_file: Path
    kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False)


def model_job(function: Callable[..., Any], model: keras.Model, model_file: str | Path, **kwargs: Any) -> Job:
    """A :class:`Job` on ``model``, saved in ``model_file``; ``function`` must be importable (module level)."""
    if not callable(function) or "<locals>" in getattr(function, "__qualname__", "<locals>"):
        raise TypeError(f"function: expected a module-level function (a worker imports it), got {function!r}")
    return Job(function=function, model=model, model_file=Path(model_file), kwargs=dict(kwargs))


def run_jobs(jobs: Sequence[Job], *, processes: int) -> list[Any]:
    """The result of every job, in the order of ``jobs``.

    With ``processes`` > 1 (and more than one job), they run in that many worker processes started for this call;
    an error in a job is raised here, with the worker's traceback."""
    processes = check_int("processes", processes, minimum=1)
    if not all(isinstance(job, Job) for job in jobs):
        raise TypeError("jobs: expected a sequence of helpers.studies.workers.Job")
    if processes == 1 or len(jobs) < 2:
        return [job.function(job.model, **job.kwargs) for job in jobs]
    missing = sorted({str(job.model_file) for job in jobs if not job.model_file.is_file()})
    if missing:
        raise FileNotFoundError(f"model_file: {missing[0]} does not exist (a worker loads the model from its file)")
    digests = {str(f): file_sha256(f) for f in {job.model_file for job in jobs}}
    context = multiprocessing.get_context("spawn")  # never fork a process that runs TensorFlow
    with ProcessPoolExecutor(max_workers=min(processes, len(jobs)), mp_context=context, initializer=_start_worker) as pool:
        futures = [pool.submit(_run_in_worker, job.function, str(job.model_file), digests[str(job.model_file)], dict(job.kwargs))
                   for job in jobs]
        return [future.result() for future in futures]


_LOADED: dict[str, keras.Model] = {}  # a worker's models, by file: its jobs on one model load it once


def _start_worker() -> None:
    """One TensorFlow thread per worker (before any op runs); the book's layers registered for loading."""
    import tensorflow as tf

    import helpers.training.train  # noqa: F401 - registers the filter layers that saved models hold

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _run_in_worker(function: Callable[..., Any], model_file: str, sha256: str, kwargs: dict[str, Any]) -> Any:
    if model_file not in _LOADED:
        if file_sha256(model_file) != sha256:
            raise ValueError(f"model_file: {Path(model_file).name} changed since its job was made (SHA-256 differs)")
        _LOADED[model_file] = keras.models.load_model(model_file, safe_mode=True)
    return function(_LOADED[model_file], **kwargs)
