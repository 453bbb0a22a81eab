"""The results module: every file named once, typed round trips, and a clear error for a stale file."""

import numpy as np
import pytest

from helpers.studies import results


@pytest.fixture(autouse=True)
def results_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS_DIR", str(tmp_path))
    return tmp_path


def test_typed_round_trip():
    rows = [{"check": "a", "model": "b", "measured": "1 %", "value": 0.01, "threshold": 0.02, "margin": 0.01, "passed": np.bool_(True)},
            {"check": "c", "model": "d", "measured": "2 %", "value": 0.02, "threshold": 0.01, "margin": -0.01, "passed": False}]
    results.SANITY.write(rows)
    back = results.SANITY.read()
    assert back[0]["passed"] is True and back[1]["passed"] is False
    results.ROBUSTNESS.write([{"model": "none", "label": "none", "seed": "all", "images": "all", "attack": "exact", "budget": 1,
                               "accuracy": np.float32(0.5), "low": 0.25, "high": float("nan"), "n": np.int64(30)}])
    row = results.ROBUSTNESS.read()[0]
    assert row["budget"] == 1.0 and isinstance(row["n"], int) and row["n"] == 30 and np.isnan(row["high"])


def test_writer_rejects_missing_or_unknown_columns():
    with pytest.raises(ValueError, match="'correct' missing"):
        results.TRANSFER_CONTROLS.write([{"images": "a", "receiver": "none", "role": "r", "seed": 0, "n": 1, "still_target": 0.5}])
    with pytest.raises(ValueError, match="unknown column 'extra'"):
        results.TRANSFER_CONTROLS.write([{"images": "a", "receiver": "none", "role": "r", "seed": 0, "n": 1, "still_target": 0.5,
                                          "correct": 0.5, "extra": 1}])
    with pytest.raises(TypeError, match="passed"):
        results.SANITY.write([{"check": "a", "model": "b", "measured": "c", "value": 0.0, "threshold": 0.0, "margin": 0.0,
                               "passed": "yes"}])


def test_stale_file_fails_with_one_line_naming_file_and_column(results_folder):
    (results_folder / "transfer_controls.csv").write_text("images,receiver,role,seed,n,still_target,right\na,none,r,0,1,1,0\n")
    with pytest.raises(results.StaleResultsError, match=r"transfer_controls.csv: column 'correct' missing") as error:
        results.TRANSFER_CONTROLS.read()
    assert "\n" not in str(error.value)
    (results_folder / "transfer_controls.csv").write_text("images,receiver,role,seed,n,still_target,correct\na,none,r,0,1,high,0\n")
    with pytest.raises(results.StaleResultsError, match=r"transfer_controls.csv column 'still_target'"):
        results.TRANSFER_CONTROLS.read()
    results.ATTACK_CLAIMS.path.write_text('{"C3": {}}')
    with pytest.raises(results.StaleResultsError, match="attack_claims.json: key 'C2' missing"):
        results.ATTACK_CLAIMS.read()


def test_missing_file_says_which_chapter_to_run():
    with pytest.raises(FileNotFoundError, match="results.csv: not written yet"):
        results.SCORES.read()


def test_arrays_and_listing(results_folder):
    results.ADVERSARIAL.write(images=np.zeros((2, 4, 4, 1)), labels=[1, 2], targets=[3, 4], adversarial=np.ones((2, 4, 4, 1)),
                              success=[True, False], l2=[0.5, 1.0])
    back = results.ADVERSARIAL.read()
    assert back["success"].dtype == bool and back["labels"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="needs the array 'labels'"):
        results.ADVERSARIAL.write(images=np.zeros((1, 2, 2, 1)))
    listing = results.listing()
    assert [r["file"] for r in listing] == ["mnist_adversarial.npz"] and listing[0]["holds"].startswith("the attacked digits")


def test_every_file_has_one_name():
    names = list(results.known_files())
    assert len(names) == len(set(names)) and "gaussian_transfer.csv" in names and "median_transfer.csv" in names


def test_every_write_names_its_file_for_the_book_runner(results_folder, tmp_path_factory, monkeypatch):
    listing = tmp_path_factory.mktemp("runner") / "written"
    monkeypatch.setenv("BOOK_WRITTEN", str(listing))
    results.SANITY.write([{"check": "a", "model": "b", "measured": "c", "value": 0.0, "threshold": 0.0, "margin": 0.0,
                               "passed": True}])
    results.BENCHMARK.write({"profile": "quick", "goals": []})
    results.ADVERSARIAL.write(**{name: np.zeros(2) for name in results.ADVERSARIAL.arrays})
    assert listing.read_text().split() == ["sanity.csv", "benchmark.json", "mnist_adversarial.npz"]
    monkeypatch.delenv("BOOK_WRITTEN")
    results.BENCHMARK.write({"profile": "quick", "goals": []})  # outside the runner: no list
    assert listing.read_text().split() == ["sanity.csv", "benchmark.json", "mnist_adversarial.npz"]
