"""Every file the notebooks hand to each other under ``data/results/``, named once, with typed readers and writers.

A chapter never spells a path: it writes ``results.SCORES.write(rows)`` and a later chapter reads
``results.SCORES.read()``, getting numbers back as numbers and booleans as booleans. Each CSV file declares its
columns and their types here, so a file written by an older or newer version of the book (a column missing,
renamed or added) fails on reading with one line naming the file and the column, instead of a ``KeyError``
three cells later. JSON documents declare their top-level keys, ``.npz`` files their arrays.

The folder is ``data/results`` under the repository root (:mod:`helpers.core.paths`), whatever the working folder;
set ``BOOK_RESULTS_DIR`` to use another one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpers.core import io, paths

STALE = "written by another version of the book; rerun `make book`"


def results_dir() -> Path:
    """The results folder: ``$BOOK_RESULTS_DIR`` or ``data/results`` under :func:`helpers.core.paths.root`."""
    chosen = os.environ.get("BOOK_RESULTS_DIR")
    return Path(chosen) if chosen else paths.data_dir() / "results"


class StaleResultsError(ValueError):
    """A results file that does not have the layout this version of the book expects."""


def _noted(path: Path) -> Path:
    """Add the file's name to the list the book runner reads after a notebook (``BOOK_WRITTEN`` names it), so that
    provenance knows which notebook wrote which file even when two notebooks run at once; returns ``path``."""
    listing = os.environ.get("BOOK_WRITTEN")
    if listing:
        with open(listing, "a") as handle:
            handle.write(path.name + "\n")
    return path


def _parse(text: str, kind: type, *, where: str) -> Any:
    if kind is str:
        return text
    try:
        if kind is bool:
            if text not in ("True", "False"):
                raise ValueError
            return text == "True"
        if kind is int:
            return int(text)
        return float(text)
    except ValueError:
        raise StaleResultsError(f"{where}: expected {kind.__name__}, got {text!r} ({STALE})") from None


def _coerce(value: Any, kind: type, *, where: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or kind is str:
        return "" if value is None else str(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected a boolean, got {type(value).__name__} {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not float(value).is_integer():
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(value, bool):
        raise TypeError(f"{where}: expected a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Table:
    """A CSV results file: its name, what it holds, and its columns in order with their types (or a function giving
    them, for a file whose columns follow a registry, read at each use)."""

    name: str
    description: str
    columns: tuple[tuple[str, type], ...] | Callable[[], tuple[tuple[str, type], ...]]

    @property
    def fields(self) -> tuple[tuple[str, type], ...]:
        """The columns in order with their types."""
        return self.columns() if callable(self.columns) else self.columns

    @property
    def path(self) -> Path:
        return results_dir() / self.name

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.fields]

    def write(self, rows: Iterable[Mapping[str, Any]]) -> Path:
        """Write ``rows`` (dicts with exactly the declared columns) atomically; returns the path."""
        rows = [dict(r) for r in rows]
        wanted = self.column_names
        out = []
        for i, row in enumerate(rows):
            extra, missing = sorted(set(row) - set(wanted)), [c for c in wanted if c not in row]
            if extra or missing:
                what = f"unknown column {extra[0]!r}" if extra else f"column {missing[0]!r} missing"
                raise ValueError(f"rows: {self.name} row {i}: {what}; columns: {', '.join(wanted)}")
            out.append({c: _coerce(row[c], kind, where=f"rows: {self.name} column {c!r}") for c, kind in self.fields})
        return _noted(io.write_csv(out, self.path))

    def read(self) -> list[dict[str, Any]]:
        """The rows, typed; one-line :class:`StaleResultsError` naming the file and column if the layout differs."""
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not written yet; run the chapter that writes it first (make book)")
        with open(path, newline="") as handle:
            header = handle.readline().rstrip("\n").split(",")
        wanted = self.column_names
        if header != wanted:
            missing = [c for c in wanted if c not in header]
            extra = [c for c in header if c not in wanted]
            what = f"column {missing[0]!r} missing" if missing else f"unknown column {extra[0]!r}" if extra else "columns in another order"
            raise StaleResultsError(f"{path}: {what} ({STALE})")
        return [
            {c: _parse(row[c], kind, where=f"{path} column {c!r}") for c, kind in self.fields}
            for row in io.read_csv(path)
        ]


@dataclass(frozen=True)
class Document:
    """A JSON results file and the top-level keys it must have."""

    name: str
    description: str
    keys: tuple[str, ...]

    @property
    def path(self) -> Path:
        return results_dir() / self.name

    def write(self, document: Mapping[str, Any]) -> Path:
        missing = [k for k in self.keys if k not in document]
        if missing:
            raise ValueError(f"document: {self.name} needs the key {missing[0]!r}")
        return _noted(io.write_json(document, self.path))

    def read(self) -> dict[str, Any]:
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not written yet; run the chapter that writes it first (make book)")
        document = io.read_json(path)
        missing = [k for k in self.keys if not isinstance(document, dict) or k not in document]
        if missing:
            raise StaleResultsError(f"{path}: key {missing[0]!r} missing ({STALE})")
        return document


@dataclass(frozen=True)
class Arrays:
    """An ``.npz`` results file (no pickled objects) and the arrays it must hold (``()``: any)."""

    name: str
    description: str
    arrays: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return results_dir() / self.name

    def write(self, **arrays: np.ndarray) -> Path:
        missing = [k for k in self.arrays if k not in arrays]
        if missing:
            raise ValueError(f"arrays: {self.name} needs the array {missing[0]!r}")
        return _noted(io.write_npz(self.path, **arrays))

    def read(self) -> dict[str, np.ndarray]:
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not written yet; run the chapter that writes it first (make book)")
        arrays = io.read_npz(path)
        missing = [k for k in self.arrays if k not in arrays]
        if missing:
            raise StaleResultsError(f"{path}: array {missing[0]!r} missing ({STALE})")
        return arrays


def _columns(spec: str) -> tuple[tuple[str, type], ...]:
    """``"model:str n:int"`` → (("model", str), ("n", int))."""
    types = {"str": str, "int": int, "float": float, "bool": bool}
    return tuple((name, types[kind]) for name, kind in (item.split(":") for item in spec.split()))


_SUMMARY = "n_attacked:int success_rate:float mean_l2:float median_l2:float mean_steps:float stalled:int"

# -- chapter 1: the attack
ATTACK = Table("attack.csv", "clean accuracy and the paper's attack per architecture (chapter 1)", _columns(
    f"model:str dataset:str image_size:int clean_accuracy:float {_SUMMARY} median_rms:float median_linf:float "
    "median_share_above_jnd:float"))
ADVERSARIAL = Arrays("mnist_adversarial.npz", "the attacked digits of chapter 1 and their adversarial versions",
                     ("images", "labels", "targets", "adversarial", "success", "l2"))
ATTACK_CLAIMS = Document("attack_claims.json", "the verdict on C2 (chapter 1)", ("C2",))

# -- chapters 2 and 3: blurring adversarial digits after the fact (one file per filter kind)


def transfer_table(kind: str) -> Table:
    """Chapter 2/3's table for one filter kind: the undefended model on blurred clean and adversarial digits."""
    from helpers.defences.filters import filter_kind

    spec = filter_kind(kind)
    return Table(f"{spec.name}_transfer.csv", f"undefended model on {spec.title} filtered digits (chapters 2–3)", _columns(
        f"defence:str label:str clean_accuracy:float still_target:float restored:float {spec.parameter_name}:float"))


# -- chapter 4: training
TRAINING = Table("training.csv", "one row per defended model and training seed (chapter 4)", _columns(
    "defence:str label:str seed:int clean_accuracy:float train_accuracy:float model_file:str"))
VALIDATION = Table("validation.csv", "what the validation split says of each filter; every choice is made here (chapter 4)",
                   _columns("defence:str label:str kind:str val_accuracy:float val_mean_l2:float val_score:float val_n_images:int"))

# -- chapter 5: the paper's score, every seed, three attacks
_MEASURE = "success_rate:float mean_l2:float mean_l2_lo:float mean_l2_hi:float score:float score_lo:float score_hi:float"
SCORES = Table("results.csv", "the paper's score per filter, on the paper's measure and the strongest (chapter 5)", _columns(
    "defence:str label:str kind:str parameter:float n_seeds:int n_images:int clean_accuracy:float accuracy_lo:float "
    f"accuracy_hi:float {_MEASURE} " + " ".join("strongest_" + c for c in _MEASURE.split()) + " other_reading_mean_l2:float"))
MIN_NORM = Table("min_norm.csv", "median and mean ‖δ‖₂ per model and attack, intervals over seeds and images (chapter 5)", _columns(
    "defence:str label:str attack:str median_l2:float mean_l2:float median_lo:float median_hi:float mean_lo:float "
    "mean_hi:float success_rate:float n_images:int n_seeds:int"))


def _min_norm_image_columns() -> tuple[tuple[str, type], ...]:
    """One ``l2_<attack>`` column per registered minimum-norm attack (:mod:`helpers.attacks.registry`), in its order."""
    from helpers.attacks.registry import attack_names

    return _columns("defence:str seed:int model_file:str test_index:int label:int target:int "
                    + " ".join(f"l2_{name}:float" for name in attack_names("minimum_norm")) + " l2_strongest:float")


MIN_NORM_IMAGES = Table("min_norm_images.csv", "per model file and attacked test image: ‖δ‖₂ of every attack, to re-attack "
                        "elsewhere (chapter 5)", _min_norm_image_columns)
CLEAN_IMAGES = Table("clean_images.csv", "per model file and test digit: classified correctly without an attack, the accuracy "
                     "behind C3 and C4 (chapter 5)", _columns("defence:str seed:int model_file:str test_index:int label:int "
                                                              "correct:bool"))
RESOLUTION = Table("resolution.csv", "the Gaussian study on digits upsampled, one seed: does the best σ move? (chapter 5)",
                   _columns("resolution:int sigma:float relative_sigma:float clean_accuracy:float success_rate:float "
                            "mean_l2:float score:float n_images:int"))
PAPER_CLAIMS = Document("paper_claims.json", "the filters chosen on the validation split and the verdicts on C3–C5 (chapter 5)",
                        ("best_defence", "claims"))

# -- chapter 6: adaptive attacks
ROBUSTNESS = Table("robustness.csv", "robust accuracy per model, seed, attack and budget, with intervals (chapter 6)", _columns(
    "model:str label:str seed:str images:str attack:str budget:float accuracy:float low:float high:float n:int"))
ROBUSTNESS_IMAGES = Table("robustness_images.csv", "per model file, test image and budget: did the worst-case attack break "
                          "it? To re-attack elsewhere (chapter 6)", _columns(
    "model:str seed:int model_file:str test_index:int label:int budget:float evaluation:str broken:bool"))
SANITY = Table("sanity.csv", "the sanity checks of the adaptive evaluation, one row per check and model (chapter 6)", _columns(
    "check:str model:str measured:str value:float threshold:float margin:float passed:bool"))
TRANSFER_CONTROLS = Table("transfer_controls.csv", "adversarial digits made on the undefended model, fed to the defended "
                          "models and to three controls (chapter 6)", _columns(
    "images:str receiver:str role:str seed:int n:int still_target:float correct:float"))
ADAPTIVE_PAPER_ATTACK = Table("adaptive_paper_attack.csv", "the paper's attack with exact and BPDA gradients (chapter 6)", _columns(
    f"model:str defence:str gradient:str {_SUMMARY} median_l2_lo:float median_l2_hi:float"))
ADAPTIVE_CLAIMS = Document("adaptive_claims.json", "the verdict on C6 and what it relied on (chapter 6)",
                           ("C6", "sanity", "models", "reference_budget", "design", "strong_vs_pgd"))

# -- chapter 7: randomized smoothing and adversarial training (first page), beside the blur (second page)
TRUSTED = Document("trusted.json", "randomized smoothing and adversarial training: clean accuracy, CPU cost, PGD curve and the "
                   "sanity checks (chapter 7, first page)", ("methods", "sanity", "budgets", "strong_budgets"))
ALTERNATIVES = Table("alternatives.csv", "robust or certified accuracy per method, parameter, seed and budget, with clean accuracy, "
                     "interval and cost (chapter 7)", _columns(
    "method:str parameter:str seed:str measure:str budget:float clean_accuracy:float accuracy:float low:float high:float n:int "
    "train_cpu_seconds:float eval_cpu_seconds_per_image:float"))
ALTERNATIVES_IMAGES = Table("alternatives_images.csv", "per model file, test image, budget and measure: still correct under the "
                            "attack, or certified that far (smoothing). To re-attack elsewhere (chapter 7, first page)", _columns(
    "method:str parameter:str seed:int model_file:str test_index:int label:int budget:float measure:str robust:bool"))
ALTERNATIVES_CLAIMS = Document("alternatives_claims.json", "the verdict on C7 and the checks it relied on (chapter 7)",
                               ("C7", "sanity"))
VERDICTS = Table("verdicts.csv", "one row per claim C1–C7 and measure, with effect, interval, rule, what the interval "
                 "proves and the family it is corrected with (chapter 7)", _columns(
    "claim:str measure:str verdict:str effect:float low:float high:float n_seeds:int n_images:int rule:str proves:str "
    "family:str stability:str evidence:str"))

# -- chapter 8 and the book runner
BENCHMARK = Document("benchmark.json", "the performance chapter's measurements (chapter 8)", ("profile", "goals"))
RUN_LOG = Document("run_log.json", "wall time and peak memory of each notebook run (book runner)", ("profile", "notebooks"))
PROVENANCE = Document("provenance.json", "for every results file: notebook, parameters, versions, SHA-256 (book runner)", ())


def known_files() -> dict[str, Table | Document | Arrays]:
    """Every results file by name (the per-kind transfer tables included)."""
    from helpers.defences.filters import FILTER_KINDS

    files = [v for v in globals().values() if isinstance(v, (Table, Document, Arrays))]
    files += [transfer_table(kind) for kind in FILTER_KINDS]
    return {f.name: f for f in files}


def listing() -> list[dict[str, Any]]:
    """The files present in the results folder: name, what it holds, size and SHA-256."""
    known = known_files()
    rows = []
    for path in sorted(p for p in results_dir().glob("*") if p.is_file() and not p.name.startswith(".")):
        entry = known.get(path.name)
        rows.append({"file": path.name, "holds": entry.description if entry else "—", "bytes": path.stat().st_size,
                     "sha256": io.file_sha256(path)})
    return rows

