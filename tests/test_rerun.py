"""Rerunning a chapter outside the runner: paths from the repository root, the lab profile, stale chapters.

The fast tests check the pieces; the ``notebooks`` ones execute chapter 2 of the quick-profile book the two ways a
reader does — papermill from an empty folder, and nbconvert from ``notebooks/`` with ``make lab``'s profile — and
require the runner's own results files back, byte for byte, with nothing written outside ``data/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.book.notebook import LAB_PROFILE_ENV, apply_lab_profile
from helpers.book.profiles import NOTEBOOKS, profile_parameters
from helpers.core import paths
from helpers.core.io import file_sha256

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def test_paths_come_from_the_repository_whatever_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ROOT_ENV, raising=False)
    monkeypatch.delenv("BOOK_RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    from helpers.studies import results
    assert paths.root() == ROOT
    assert results.results_dir() == ROOT / "data" / "results"
    assert paths.models_dir() == ROOT / "data" / "models"
    assert paths.relative(ROOT / "data" / "models" / "x.keras") == "data/models/x.keras"
    assert paths.relative(tmp_path / "y.keras") == (tmp_path / "y.keras").as_posix()


def test_book_root_moves_everything_and_a_bad_one_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("BOOK_RESULTS_DIR", raising=False)
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))
    from helpers.studies import results
    assert results.results_dir() == tmp_path / "data" / "results"
    assert paths.live_slider_dir() == tmp_path / "data" / "live-slider"
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"^BOOK_ROOT: .*missing.* is not a folder$"):
        paths.root()


def test_the_model_cache_defaults_to_the_root_not_the_working_folder(tmp_path, monkeypatch):
    from helpers.training.data import load_dataset
    from helpers.training.train import fit_cached

    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path / "book"))
    (tmp_path / "book").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    fit = fit_cached("small_cnn", load_dataset("digits", n_images=200), epochs=1, verbose=0)
    assert fit.path.parent == tmp_path / "book" / "data" / "models"
    assert not any((tmp_path / "elsewhere").iterdir())


def _chapter_globals(profile: str, **edits) -> dict:
    names = ["profile", "epochs", "sigmas", "train_seeds", "step"]
    params = {name: profile_parameters(profile)[name] for name in names}
    return params | edits


def test_lab_profile_takes_the_builds_values_and_keeps_what_the_reader_edited(monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: None)
    params = _chapter_globals("default", step=0.05)
    quick = profile_parameters("quick")
    note = apply_lab_profile(params, profile="quick")
    assert params["profile"] == "quick" and params["epochs"] == quick["epochs"] and params["sigmas"] == quick["sigmas"]
    assert params["step"] == 0.05 and note["kept"] == ["step"]
    assert "epochs" in note["changed"] and "profile" in note["changed"]


def test_lab_profile_leaves_the_runner_and_the_default_profile_alone(monkeypatch):
    injected = _chapter_globals("quick")  # the runner injected its own profile
    assert apply_lab_profile(dict(injected), profile="default") == {"changed": [], "kept": []}
    default = _chapter_globals("default")
    same = dict(default)
    assert apply_lab_profile(same, profile="default") == {"changed": [], "kept": []} and same == default
    monkeypatch.delenv(LAB_PROFILE_ENV, raising=False)
    assert apply_lab_profile(dict(default)) == {"changed": [], "kept": []}
    with pytest.raises(ValueError, match=r"^BOOK_PROFILE: expected quick or default"):
        apply_lab_profile(dict(default), profile="fast")


def test_a_results_file_changed_outside_the_runner_makes_its_writer_and_readers_stale(tmp_path):
    from run_book import changed_since_written, with_dependents

    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.csv").write_text("y\n2\n")
    provenance = {"a.csv": {"notebook": "02_gaussian", "sha256": file_sha256(tmp_path / "a.csv")},
                  "b.csv": {"notebook": "04_training", "sha256": file_sha256(tmp_path / "b.csv")},
                  "gone.csv": {"notebook": "07_trusted", "sha256": "0" * 64}}
    assert changed_since_written(provenance, tmp_path) == {"gone.csv": "07_trusted"}
    (tmp_path / "b.csv").write_text("y\n3\n")
    assert changed_since_written(provenance, tmp_path) == {"b.csv": "04_training", "gone.csv": "07_trusted"}
    stale = with_dependents({"04_training"})
    assert stale[0] == "04_training" and {"05_results", "06_adaptive", "07_comparison", "09_conclusion"} <= set(stale)
    assert "01_attack" not in stale and "07_trusted" not in stale
    assert with_dependents({"09_conclusion"}) == ["09_conclusion", "10_reproducibility"]
    assert with_dependents(set()) == []
    assert set(with_dependents({"01_attack"})) <= set(NOTEBOOKS)


# ------------------------------------------------------------------------------------ chapter 2, outside the runner


def _tree_state() -> dict[str, int]:
    """Modification times of the repository's files outside data/ and what the tools keep for themselves."""
    skip = {".git", ".venv", "node_modules", "data", "artifacts", ".pytest_cache", ".ruff_cache", "__pycache__",
            ".ipynb_checkpoints"}
    state = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            state[str(path.relative_to(ROOT))] = path.stat().st_mtime_ns
    return state


def _results_state() -> dict[str, str]:
    from helpers.studies import results
    return {p.name: file_sha256(p) for p in results.results_dir().iterdir() if p.is_file() and p.name != "run_log.json"}


def _environment(**extra: str) -> dict[str, str]:
    from run_book import notebook_environment

    return {k: v for k, v in notebook_environment().items() if k not in ("BOOK_ROOT", "BOOK_RESULTS_DIR")} | extra


@pytest.mark.notebooks
def test_chapter_two_rerun_from_an_empty_folder_and_from_notebooks_gives_the_runners_results(quick_book, tmp_path):
    from run_book import notebook_parameters

    results_before, tree_before = _results_state(), _tree_state()
    names = notebook_parameters(ROOT / "notebooks" / "02_gaussian.ipynb")
    quick = profile_parameters("quick")
    empty = tmp_path / "empty"
    empty.mkdir()
    command = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "02_gaussian.ipynb"), str(tmp_path / "pm.ipynb"),
               "--cwd", str(empty), "-k", "python3"]
    for name in names:
        command += ["-y", json.dumps({name: quick[name]})]
    run = subprocess.run(command, cwd=empty, env=_environment(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not any(empty.iterdir()), sorted(p.name for p in empty.iterdir())
    assert _results_state() == results_before

    run = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                          "--ExecutePreprocessor.timeout=600", "--output-dir", str(tmp_path), "--output", "nbc",
                          "02_gaussian.ipynb"], cwd=ROOT / "notebooks", env=_environment(**{LAB_PROFILE_ENV: "quick"}),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Profile quick" in (tmp_path / "nbc.ipynb").read_text()
    assert _results_state() == results_before
    assert _tree_state() == tree_before


@pytest.mark.notebooks
def test_the_runner_names_the_chapters_a_changed_results_file_makes_stale(quick_book):
    from helpers.studies import results

    path = results.results_dir() / "gaussian_transfer.csv"
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n")  # what a rerun with other parameters does to the bytes
        run = subprocess.run([sys.executable, "scripts/run_book.py", "--profile", "quick", "--no-build", "--only", "09_conclusion"],
                             cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_bytes(original)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "! gaussian_transfer.csv changed since 02_gaussian wrote it" in run.stdout, run.stdout
    assert "outside --only, so the book mixes two runs until they are re-executed: 02_gaussian, 03_median, 08_performance, " \
           "10_reproducibility" in run.stdout, run.stdout
