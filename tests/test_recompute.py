"""Every verdict's effect, recomputed from the per-image results files alone with pandas (none of the package's
statistics): what a reader who distrusts our code can do with ``data/results/``. Runs on the quick-profile book."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

RESULTS = Path(__file__).resolve().parent.parent / "data" / "results"
pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def files(quick_book):
    read = lambda name: pd.read_csv(RESULTS / name)  # noqa: E731
    return {"verdicts": read("verdicts.csv"), "clean": read("clean_images.csv"), "min_norm": read("min_norm_images.csv"),
            "robustness": read("robustness_images.csv"), "alternatives": read("alternatives_images.csv"),
            "choices": json.loads((RESULTS / "paper_claims.json").read_text()),
            "adaptive": json.loads((RESULTS / "adaptive_claims.json").read_text()),
            "trusted": json.loads((RESULTS / "trusted.json").read_text())}


def _effects(verdicts: pd.DataFrame, key: str) -> dict[str, float]:
    rows = verdicts[verdicts["claim"].str.startswith(f"{key}:")]
    return dict(zip(rows["measure"], rows["effect"], strict=True))


def _accuracy(clean: pd.DataFrame, defence: str) -> float:
    """Mean over seeds of each seed's share of correct test digits."""
    return clean[clean["defence"] == defence].groupby("seed")["correct"].mean().mean()


def _mean_l2(min_norm: pd.DataFrame, defence: str, measure: str) -> pd.Series:
    """Per seed, the mean ‖δ‖₂ over the attacked digits where the attack succeeded."""
    return min_norm[min_norm["defence"] == defence].groupby("seed")[f"l2_{measure}"].mean()


def test_c4_and_c3_from_clean_images_and_min_norm_images(files):
    choices, clean, min_norm = files["choices"], files["clean"], files["min_norm"]
    c4 = _effects(files["verdicts"], "C4")
    if choices.get("accurate_gaussian") and choices.get("accurate_median"):
        expected = _accuracy(clean, choices["accurate_gaussian"]) - _accuracy(clean, choices["accurate_median"])
        assert c4["accuracy"] == pytest.approx(expected, abs=1e-6)  # verdicts.csv keeps 6 significant digits
    gauss = choices.get("best_gaussian")
    for measure, effect in _effects(files["verdicts"], "C3").items():
        if gauss and np.isfinite(effect):
            ratio = _mean_l2(min_norm, gauss, measure).mean() / _mean_l2(min_norm, "none", measure).mean()
            assert effect == pytest.approx(ratio - 1, abs=1e-6), measure


def _score(clean: pd.DataFrame, min_norm: pd.DataFrame, defence: str, measure: str) -> float:
    """The paper's score: mean over seeds of the seed's accuracy × its mean ‖δ‖₂."""
    accuracy = clean[clean["defence"] == defence].groupby("seed")["correct"].mean()
    return float((accuracy * _mean_l2(min_norm, defence, measure)).mean())


def test_c5_from_clean_images_and_min_norm_images(files):
    choices, clean, min_norm = files["choices"], files["clean"], files["min_norm"]
    rival = choices.get("rival")
    for measure, effect in _effects(files["verdicts"], "C5").items():
        if not (rival and np.isfinite(effect)):
            continue

        score = {d: _score(clean, min_norm, d, measure) for d in ("gaussian:1.5", rival)}
        assert effect == pytest.approx(score["gaussian:1.5"] / score[rival] - 1, abs=1e-6), measure


def _shares(rows: pd.DataFrame, *, budgets: list[float] | None = None) -> pd.Series:
    """Per (seed, digit): the share of the budgets ε > 0 it survives."""
    rows = rows[rows["budget"] > 0]
    if budgets is not None:
        rows = rows[rows["budget"].isin(budgets)]
    return (~rows["broken"].astype(bool)).groupby([rows["seed"], rows["test_index"]]).mean()


def test_c6_from_robustness_images(files):
    robustness, adaptive = files["robustness"], files["adaptive"]
    effect = _effects(files["verdicts"], "C6")
    strongest = robustness[robustness["evaluation"] == "strongest worst case"]
    budgets = sorted(set(strongest["budget"]) - {0.0})
    share = {m: _shares(strongest[strongest["model"] == m], budgets=budgets).mean()
             for m in adaptive["models"]}
    best = max(share[m] - share["none"] for m in adaptive["models"] if m != "none")
    assert next(iter(effect.values())) == pytest.approx(best, abs=1e-6)  # verdicts.csv keeps 6 significant digits


def test_c7_and_the_clean_accuracies_from_the_image_files(files):
    effect = next(iter(_effects(files["verdicts"], "C7").values()))
    blur = files["choices"].get("best_gaussian")
    if not (blur and np.isfinite(effect)):
        pytest.skip("no C7 effect in this run")
    robustness, alternatives = files["robustness"], files["alternatives"]
    blur_rows = robustness[(robustness["model"] == blur) & (robustness["evaluation"] == "strongest worst case")]
    compared = alternatives[alternatives["measure"] != "clean"]  # chapter 7 compares on its digits and seeds
    blur_rows = blur_rows[blur_rows["test_index"].isin(compared["test_index"]) & blur_rows["seed"].isin(compared["seed"])]
    blur_share = _shares(blur_rows).mean()
    differences = []
    for _, rows in alternatives[alternatives["measure"] != "clean"].groupby(["parameter", "measure"]):
        alt = rows.assign(broken=~rows["robust"].astype(bool))
        differences.append(blur_share - _shares(alt).mean())
    assert min(abs(effect - d) for d in differences) < 1e-6  # the verdict's number is one of these differences
    for method in files["trusted"]["methods"]:  # the clean accuracy C7's equal-accuracy rule reads
        clean = alternatives[(alternatives["parameter"] == method["parameter"]) & (alternatives["measure"] == "clean")]
        assert clean.groupby("seed")["robust"].mean().mean() == pytest.approx(method["clean_accuracy"], abs=1e-12)
