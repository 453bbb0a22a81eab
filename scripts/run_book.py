"""Run the notebooks in order with papermill, then build the Jupyter Book.

    python scripts/run_book.py --profile quick            # all notebooks, then the book
    python scripts/run_book.py --profile default --only 02_gaussian -p sigmas "[0, 1, 2]"

A notebook is re-executed only when its source, its parameters, the helpers package or a notebook it needs
(helpers.book.profiles.NEEDS) changed, or when a results file it wrote was changed since (a chapter rerun in JupyterLab,
say): then it and every chapter that needs it run again. Otherwise the executed copy in book/executed/ is kept. Two notebooks run at once
where NEEDS allows it (--jobs 1: one at a time, in book order; else chapter 6 first when it may start); the chapters that time things run alone. Wall time,
CPU time and peak memory of each run go to data/results/run_log.json (read by the reproducibility chapter).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from helpers.book.notebook import LAB_PROFILE_ENV  # noqa: E402
from helpers.book.preflight import preflight  # noqa: E402
from helpers.book.profiles import NEEDS, NOTEBOOKS, RUNS_ALONE, STARTS_FIRST, parameters_cell, profile_parameters  # noqa: E402
from helpers.core import io, paths  # noqa: E402
from helpers.core.io import file_sha256, package_versions  # noqa: E402
from helpers.studies import results  # noqa: E402

SOURCE = ROOT / "notebooks"
# Where the notebooks' data/ folder and their executed copies are; --output-root moves both (helpers.core.paths.ROOT_ENV).
WORK = ROOT
EXECUTED = WORK / "book" / "executed"


def notebook_parameters(path: Path) -> list[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    cells = [c for c in json.loads(path.read_text())["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise SystemExit(f"{path.name}: needs exactly one cell tagged 'parameters', found {len(cells)}")
    names = []
    for line in "".join(cells[0]["source"]).splitlines():
        name, sep, _ = line.partition("=")
        if sep and name.strip().isidentifier() and not line.startswith((" ", "#")):
            names.append(name.strip())
    return names


def sync_parameter_cells() -> list[str]:
    """Rewrite every notebook's ``parameters`` cell from the declared defaults; returns the notebooks changed."""
    changed = []
    for name in NOTEBOOKS:
        path = SOURCE / f"{name}.ipynb"
        nb = json.loads(path.read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        text = parameters_cell(notebook_parameters(path))
        if "".join(cell["source"]) != text:
            lines = text.split("\n")
            cell["source"] = [line + "\n" for line in lines[:-1]] + lines[-1:]
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(name)
    return changed


def helpers_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "helpers").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stamp_of(source: Path, params: dict, upstream: str) -> str:
    text = json.dumps({"nb": hashlib.sha256(source.read_bytes()).hexdigest(), "params": params, "helpers": helpers_digest(), "up": upstream, "onednn": notebook_environment()["TF_ENABLE_ONEDNN_OPTS"]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_stamp(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["metadata"].get("book_stamp")
    except (OSError, ValueError, KeyError):
        return None


def rerun_note(name: str) -> str:
    """The first cell of a downloaded chapter: what it needs to run."""
    return (f"**To rerun this chapter**, clone the book's repository, run `make lab` in it (it installs what the book needs "
            f"and opens JupyterLab) and open `notebooks/{name}.ipynb` there. This copy was executed by `make book`; on its "
            "own it cannot run, since it imports the repository's `helpers` package and reads the results of the "
            "chapters before it.")


def finalise(path: Path, stamp: str) -> None:
    """Hide papermill's parameter cells in the book, put the rerun note first (for a reader who downloads the
    notebook from its page; the page itself does not show it) and record the stamp."""
    nb = json.loads(path.read_text())
    nb["cells"].insert(0, {"cell_type": "markdown", "id": "rerun-note", "metadata": {"tags": ["remove-cell"]},
                           "source": rerun_note(path.stem)})
    for cell in nb["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    nb["metadata"]["book_stamp"] = stamp
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    os.replace(tmp, path)


def record_provenance(name: str, params: dict, written: Collection[str]) -> None:
    """Note, for every results file a notebook (re)wrote, the notebook, its parameters, versions and SHA-256."""
    provenance = results.PROVENANCE.read() if results.PROVENANCE.path.exists() else {}
    for file_name in sorted(set(written)):
        path = results.results_dir() / file_name
        if path.is_file():
            provenance[file_name] = {"notebook": name, "parameters": params, "versions": package_versions(), "sha256": file_sha256(path)}
    results.PROVENANCE.write(provenance)


def changed_since_written(provenance: Mapping[str, Mapping[str, Any]], folder: Path) -> dict[str, str]:
    """The results files in ``folder`` whose bytes are no longer those the runner recorded when a notebook wrote them
    (rewritten by a chapter run outside the runner, or deleted), each with the notebook that wrote it."""
    changed = {}
    for file_name, entry in sorted(provenance.items()):
        path = folder / file_name
        if not path.is_file() or file_sha256(path) != entry.get("sha256"):
            changed[file_name] = entry["notebook"]
    return changed


def with_dependents(names: Collection[str]) -> list[str]:
    """``names`` and every notebook that needs one of them, directly or not (helpers.book.profiles.NEEDS), in book order."""
    affected = set(names)
    for name in NOTEBOOKS:  # NEEDS only names earlier notebooks, so one pass in book order is enough
        if any(need in affected for need in NEEDS[name]):
            affected.add(name)
    return [name for name in NOTEBOOKS if name in affected]


def startable(pending: Sequence[str], *, done: Collection[str], running: Collection[str], jobs: int) -> list[str]:
    """The pending notebooks to start now: those whose NEEDS have all run, with at most ``jobs`` running at once, in
    book order (with more than one job, STARTS_FIRST before the others). A notebook of RUNS_ALONE starts only when
    nothing else runs, nothing starts beside it, and while it waits for the others to finish no notebook after it
    starts."""
    start: list[str] = []
    order = sorted(pending, key=lambda name: name not in STARTS_FIRST) if jobs > 1 else pending
    for name in order:
        busy = [*running, *start]
        if len(busy) >= jobs or any(other in RUNS_ALONE for other in busy):
            break
        if not all(need in done for need in NEEDS[name]):
            continue
        if name in RUNS_ALONE:
            if not busy:
                start.append(name)
            break
        start.append(name)
    return start


def notebook_environment() -> dict[str, str]:
    """The environment of every notebook kernel: quiet TensorFlow, fixed hashing, and TensorFlow's oneDNN CPU kernels
    switched on (unless the caller set ``TF_ENABLE_ONEDNN_OPTS``). TensorFlow enables oneDNN by default only on CPUs
    with AVX-512 VNNI/BF16 or AMX; elsewhere its fallback convolution gradients train InceptionV3 and ResNet50 about
    half as fast. Training the small CNN with oneDNN is still bit-for-bit repeatable (chapter 1's InceptionV3 was
    seen to train to other weights in a second fresh build); results differ from oneDNN-off runs in the
    last digits."""
    env = {"TF_ENABLE_ONEDNN_OPTS": "1"} | os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    env.pop(LAB_PROFILE_ENV, None)  # `make lab`'s profile is for JupyterLab; the runner injects its own parameters
    return env


# Lines a notebook's kernel prints that are not the runner's business: TensorFlow's C++ log (absl), papermill's
# banner and the kernel's transport warning. They go to book/executed/NAME.log; the terminal shows progress.
NOISE = re.compile(
    r"^([IWEF]\d{4} |WARNING: All log messages before absl|Input Notebook:|Output Notebook:|Working directory:|"
    r"Executing notebook with kernel|\[IPKernelApp\] WARNING \| Kernel is running over TCP|Executing:|"
    r"To enable the following instructions|.*rebuild TensorFlow with the appropriate compiler flags)"
)
PROGRESS = re.compile(r"Executing:.*?(\d+)/(\d+)")


@contextlib.contextmanager
def native_output_filtered():
    """Send this process's stdout and stderr (Python's and native libraries') to a temporary file while the block
    runs, then show what is left of it without TensorFlow's C++ log lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines() if line.strip() and not NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


class Progress:
    """The terminal's one status line while notebooks run: each running notebook's cell counter."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.cells: dict[str, str] = {}
        self.lock = threading.Lock()
        self.shown = sys.stdout.isatty()

    def update(self, name: str, cell: str | None) -> None:
        if not self.shown:
            return
        with self.lock:
            if cell is None:
                self.cells.pop(name, None)
            else:
                self.cells[name] = cell
            line = " · ".join(f"{n} cell {c}" for n, c in self.cells.items())
            print("\r\033[K" + (f"  {line}  {time.perf_counter() - self.start:4.0f} s" if line else ""), end="", flush=True)

    def say(self, text: str) -> None:
        """Print a line above the status line."""
        with self.lock:
            print(("\r\033[K" if self.shown else "") + text, flush=True)


def run_notebook(name: str, params: dict, progress: Progress) -> dict[str, Any]:
    """Execute one notebook with papermill in a child process; returns its start time, wall seconds, CPU seconds
    (user + system, the kernel included), peak MiB and the results files it wrote (each results write names its file
    in the list that ``BOOK_WRITTEN`` points to).

    The child's output goes to ``book/executed/NAME.log``; the terminal shows a cell counter and, if the run
    fails, the end of that log without TensorFlow's C++ log lines."""
    source, target = SOURCE / f"{name}.ipynb", EXECUTED / f"{name}.ipynb"
    log_path = target.with_suffix(".log")
    # The kernel starts in notebooks/, as it does in Jupyter: the package finds data/ from the repository root
    # (helpers.core.paths), never from the working folder.
    cmd = [sys.executable, "-m", "papermill", str(source), str(target), "--cwd", str(SOURCE), "-k", "python3"]
    for key, value in params.items():
        cmd += ["-y", json.dumps({key: value})]
    start, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S")
    with open(log_path, "wb") as log, tempfile.NamedTemporaryFile("r", prefix=f"{name}.", suffix=".written") as written:
        env = notebook_environment() | {"BOOK_WRITTEN": written.name}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        pending = b""
        while chunk := os.read(proc.stdout.fileno(), 65536):
            log.write(chunk)
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            for line in lines:
                if match := PROGRESS.search(line.decode(errors="replace")):
                    progress.update(name, f"{match[1]}/{match[2]}")
        _, status, usage = os.wait4(proc.pid, 0)
        files = written.read().split()
    seconds = time.perf_counter() - start
    progress.update(name, None)
    if os.waitstatus_to_exitcode(status) != 0:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip() and not NOISE.match(line)]
        progress.say("\n".join(lines[-40:]))
        raise RuntimeError(f"{name}: papermill failed (above: the end of {log_path}); the executed copy is in {target}")
    return {"started": started, "seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024,
            "written": files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default", help="quick | default | paper")
    parser.add_argument("--data", default=None, help="ImageNet-style folder (paper profile)")
    parser.add_argument("--only", action="append", default=[], help="run only these notebooks (repeatable)")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="override a parameter (JSON value)")
    parser.add_argument("--force", action="store_true", help="re-execute even if nothing changed")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="notebooks run at once where helpers.book.profiles.NEEDS allows it (default 2 on the CPU "
                             "profiles; 1, in book order, for the paper profile, whose notebooks each fill a GPU)")
    parser.add_argument("--no-build", action="store_true", help="only run the notebooks")
    parser.add_argument("--output-root", default=None, metavar="DIR",
                        help="run the notebooks in DIR (its data/ and book/executed/), leaving the repository's own "
                             "outputs alone; needs --no-build")
    parser.add_argument("--sync-parameters", action="store_true",
                        help="rewrite the notebooks' parameters cells from helpers.book.profiles.PARAMETERS and exit")
    args = parser.parse_args()
    if args.sync_parameters:
        print("rewrote: " + (", ".join(sync_parameter_cells()) or "nothing (all in step)"))
        return

    try:
        params = profile_parameters(args.profile, data_dir=args.data)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    for name, value in args.p:
        if name not in params:
            raise SystemExit(f"error: -p {name}: unknown parameter; known: {', '.join(sorted(params))}")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    if args.jobs is None:
        args.jobs = 1 if args.profile == "paper" else 2
    if args.jobs < 1:
        raise SystemExit(f"error: --jobs: must be >= 1, got {args.jobs}")
    unknown = sorted(set(args.only) - set(NOTEBOOKS))
    if unknown:
        raise SystemExit(f"error: --only {unknown[0]}: unknown notebook; known: {', '.join(NOTEBOOKS)}")
    try:  # every parameter and every file the run needs, before any training
        with native_output_filtered():  # loading weights wakes TensorFlow, whose C++ log is not ours to show
            notes = preflight(params)
        for note in notes:
            print(f"  {note}", flush=True)
    except (TypeError, ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from None

    if args.output_root:
        if not args.no_build:
            raise SystemExit("error: --output-root: the book builds from the repository's book/executed; add --no-build")
        global WORK, EXECUTED
        WORK = Path(args.output_root).resolve()
        EXECUTED = WORK / "book" / "executed"
        os.environ[paths.ROOT_ENV] = str(WORK)  # this process and every notebook kernel (they inherit it)
    EXECUTED.mkdir(parents=True, exist_ok=True)
    log = io.read_json(results.RUN_LOG.path) if results.RUN_LOG.path.exists() else {}
    by_profile = log.get("by_profile", {})  # every profile's latest timings, for the performance chapter
    if log.get("profile"):
        by_profile[log["profile"]] = log.get("notebooks", {})
    if log.get("profile") != args.profile:
        log = {"profile": args.profile, "notebooks": {}}
    log["by_profile"] = by_profile | {args.profile: log["notebooks"]}
    # Results files changed since their notebook wrote them (a chapter rerun in JupyterLab): the book must not mix two
    # runs, so the writer runs again with the book's parameters, and every chapter that needs it.
    provenance = results.PROVENANCE.read() if results.PROVENANCE.path.exists() else {}
    changed = changed_since_written(provenance, results.results_dir())
    stale = with_dependents(set(changed.values()))
    for file_name, writer in changed.items():
        print(f"! {file_name} changed since {writer} wrote it in `make book` (a rerun outside the runner?)", flush=True)
    rerun = [name for name in stale if not args.only or name in args.only]
    left = [name for name in stale if name not in rerun]
    if rerun:
        print(f"! stale, so re-executed: {', '.join(rerun)}", flush=True)
    if left:
        print(f"! stale but outside --only, so the book mixes two runs until they are re-executed: {', '.join(left)}",
              flush=True)
    # Every notebook's stamp, from its source, parameters and the stamps of the notebooks it needs; which to run.
    wanted, stamps, pending = {}, {}, []
    for name in NOTEBOOKS:
        source, target = SOURCE / f"{name}.ipynb", EXECUTED / f"{name}.ipynb"
        wanted[name] = {k: params[k] for k in notebook_parameters(source) if k in params}
        stamp = stamp_of(source, wanted[name], "".join(stamps[need] for need in NEEDS[name]))
        selected = not args.only or name in args.only
        if selected and (args.force or name in stale or recorded_stamp(target) != stamp):
            pending.append(name)
            stamps[name] = stamp
        elif not target.exists():
            raise SystemExit(f"{name}: no executed copy yet; run without --only first")
        else:
            print(f"✓ {name}  unchanged, kept", flush=True)
            stamps[name] = recorded_stamp(target) or stamp

    progress, failures = Progress(), []
    done = {name for name in NOTEBOOKS if name not in pending}
    running: dict = {}
    ran: list[str] = []
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        while pending or running:
            for name in [] if failures else startable(pending, done=done, running=running.values(), jobs=args.jobs):
                progress.say(f"▶ {name}  ({args.profile})")
                pending.remove(name)
                running[pool.submit(run_notebook, name, wanted[name], progress)] = name
            if not running:  # a failure stopped the rest
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                try:
                    run = future.result()
                except RuntimeError as error:
                    failures.append(str(error))
                    continue
                record_provenance(name, wanted[name], run["written"])
                finalise(EXECUTED / f"{name}.ipynb", stamps[name])
                done.add(name)
                ran.append(name)
                log["notebooks"][name] = {"seconds": round(run["seconds"], 1), "cpu_seconds": round(run["cpu_seconds"], 1),
                                          "peak_mib": round(run["peak_mib"], 1), "started": run["started"],
                                          "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
                results.RUN_LOG.write(log)
                progress.say(f"  {name} done in {run['seconds']:.0f} s (CPU {run['cpu_seconds']:.0f} s), "
                             f"peak {run['peak_mib']:.0f} MiB")
    if failures:
        raise SystemExit("\n".join(failures))
    if pending:  # cannot happen while NEEDS only names earlier notebooks (a test checks this)
        raise SystemExit(f"error: notebooks left waiting for others: {', '.join(pending)}")
    if ran:
        log["last_run"] = {"notebooks": ran, "seconds": round(time.perf_counter() - began, 1), "jobs": args.jobs}
        results.RUN_LOG.write(log)
        print(f"{len(ran)} notebooks ran in {log['last_run']['seconds']:.0f} s, up to {args.jobs} at a time", flush=True)

    if args.no_build:
        return
    build = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "--path-output", str(ROOT / "book"), "-W", "-n", "--keep-going"]
    if subprocess.call(build) != 0:
        raise SystemExit("error: jupyter-book build failed or warned (see above)")
    print(f"\nThe book is at {ROOT / 'book' / '_build' / 'html' / 'index.html'}")


if __name__ == "__main__":
    main()
