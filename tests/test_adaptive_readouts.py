"""Chapter 6's readouts: the sentences and tables its prose shows, from small results."""

import numpy as np
import pandas as pd
import pytest

from helpers.core.contract import RobustnessResult
from helpers.studies.adaptive_readouts import (
    blur_credit,
    cosine,
    evaluation_text,
    exact_gradient_wins,
    gradient_rows,
    median_sweep_sentence,
    middle_budget_glued,
    paper_attack_glued,
    square_wins,
    strong_glued,
    strong_readout,
)
from helpers.studies.verdicts import MIN_ROBUST_GAIN


def test_median_sweep_sentence_says_where_the_output_follows_the_pixel():
    sweep = np.linspace(0, 1, 11)
    assert median_sweep_sentence(sweep, None).startswith("(none is under test")
    assert "does not move at all" in median_sweep_sentence(sweep, np.full(11, 0.3))
    follows = np.clip(sweep, 0.2, 0.5)
    assert "between 0.20 and 0.50" in median_sweep_sentence(sweep, follows)


def test_gradient_rows_count_non_zero_pixels_and_the_cosine():
    exact, bpda = np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 1.0], [1.0, 1.0]])
    rows = gradient_rows({"median:3": (exact, bpda)}, {"median:3": "median 3×3"})
    assert rows == [{"model": "median 3×3", "exact: pixels ≠ 0": 0.25, "BPDA: pixels ≠ 0": 1.0,
                     "cosine(exact, BPDA)": pytest.approx(0.5)}]
    assert cosine(np.zeros(3), np.ones(3)) == 0.0


def _summary(confident_defended: float) -> pd.DataFrame:
    rows = []
    for kind, defended in (("boundary (chapter 1)", 0.4), ("high-confidence", confident_defended)):
        rows += [{"images": kind, "role": "defended", "receiver": "G", "correct": defended},
                 {"images": kind, "role": "control: another seed", "receiver": "none", "correct": 0.3},
                 {"images": kind, "role": "control: noise", "receiver": "none", "correct": 0.35}]
    return pd.DataFrame(rows)


def test_blur_credit_is_the_defended_accuracy_beyond_the_best_control():
    beyond, glued = blur_credit(_summary(0.35 + 2 * MIN_ROBUST_GAIN), kinds=["boundary (chapter 1)", "high-confidence"])
    assert beyond["credited to the blur"].tolist() == pytest.approx([0.05, 2 * MIN_ROBUST_GAIN])
    assert glued["transfer_best_correct"] == pytest.approx(40) and glued["transfer_control_correct"] == pytest.approx(35)
    assert glued["confident_beyond"] == pytest.approx(200 * MIN_ROBUST_GAIN)
    assert glued["transfer_conclusion"].endswith("it helps")
    _, glued = blur_credit(_summary(0.35), kinds=["boundary (chapter 1)", "high-confidence"])
    assert glued["transfer_conclusion"].endswith("the images' fragility")


def test_paper_attack_glued_takes_each_defences_stronger_gradient():
    table = pd.DataFrame([
        {"defence": "none", "gradient": "exact", "median_l2": 1.0, "success_rate": 1.0},
        {"defence": "gaussian:1.5", "gradient": "exact", "median_l2": 2.0, "success_rate": 1.0},
        {"defence": "gaussian:1.5", "gradient": "BPDA", "median_l2": 1.5, "success_rate": 0.9},
        {"defence": "median:3", "gradient": "exact", "median_l2": 3.0, "success_rate": 1.0},
        {"defence": "median:3", "gradient": "BPDA", "median_l2": 4.0, "success_rate": 1.0}])
    glued = paper_attack_glued(table)
    assert (glued["paper_none_median"], glued["paper_defended_lo"], glued["paper_defended_hi"]) == (1.0, 1.5, 3.0)
    assert (glued["paper_bpda_wins"], glued["paper_n_defended"]) == (1, 2)
    assert glued["paper_success"] == "on at least 90% of the digits of every model"


def _result(correct: np.ndarray) -> RobustnessResult:
    n = correct.shape[1]
    return RobustnessResult(budgets=np.array([0.0, 1.0]), correct=correct, success=~correct,
                            adversarial=np.zeros((2, n, 1, 1, 1)), l2=np.zeros((2, n)), gradient_norm=np.zeros(n))


def test_square_and_gradient_wins():
    intact, broken = np.ones((2, 3), bool), np.array([[True] * 3, [False, True, True]])
    strong = {"m": {0: {"Square": _result(broken), "APGD-CE exact": _result(intact)}}}
    flags = {"m": {"gradient worst": {0: intact}}}
    assert square_wins(strong, flags, seeds=[0]) == {"m": 1}
    assert square_wins(strong, {"m": {"gradient worst": {0: broken}}}, seeds=[0]) == {"m": 0}
    grads = {"APGD-CE exact": _result(broken), "APGD-DLR exact": _result(intact), "APGD-CE BPDA": _result(intact),
             "APGD-DLR BPDA": _result(intact), "Square": _result(intact)}
    assert exact_gradient_wins({"g": {0: grads}}, defended=["g"], seeds=[0]) == ["g"]


def test_strong_glued_and_evaluation_text_follow_the_choice():
    glued = strong_glued(exact_wins=[], n_defended=2, gradient_free_wins=[], largest_drop=0.01, use_strong=False, n_strong=5,
                         n_adaptive=20)
    assert glued["strong_decision"] == "at most" and "on all 20 digits" in glued["strong_consequence"]
    assert glued["gradient_sentence"].endswith("BPDA was stronger for all of them") and glued["largest_drop"] == 1.0
    glued = strong_glued(exact_wins=["G"], n_defended=2, gradient_free_wins=["G: 3 digit-budget pairs"], largest_drop=0.1,
                         use_strong=True, n_strong=5, n_adaptive=20)
    assert glued["strong_decision"] == "more than" and "C6 cannot be confirmed" in glued["square_sentence"]
    assert "1 of the 2 defended models (G)" in glued["gradient_sentence"]
    assert evaluation_text(use_strong=True, n_strong=5, n_adaptive=20).endswith("on 5 digits")
    assert evaluation_text(use_strong=False, n_strong=5, n_adaptive=20).endswith("within 2%")


def test_middle_budget_glued_reads_the_worst_case_at_the_middle_budget():
    curves = pd.DataFrame([{"model": m, "attack": a, "budget": b, "accuracy": acc}
                           for m, acc in (("none", 0.1), ("g", 0.3), ("h", 0.2)) for a in ("worst", "noise")
                           for b in (0.0, 1.0, 2.0, 3.0)])
    mid, glued = middle_budget_glued(curves, budgets=[0.0, 1.0, 2.0, 3.0], defended=["g", "h"], names={"g": "G", "h": "H"})
    assert mid == 2.0 and glued["mid_best_label"] == "G"
    assert glued["mid_none"] == pytest.approx(10) and glued["mid_best"] == pytest.approx(30)


def test_strong_readout_names_square_wins_and_glues_the_sentences():
    intact, broken = np.ones((2, 3), bool), np.array([[True] * 3, [False, True, True]])
    results = {"APGD-CE exact": _result(intact), "APGD-DLR exact": _result(intact), "APGD-CE BPDA": _result(broken),
               "APGD-DLR BPDA": _result(intact), "Square": _result(broken)}
    free_wins, glued = strong_readout({"g": {0: results}}, {"g": {"gradient worst": {0: intact}}}, names={"g": "G"}, defended=["g"],
                                      seeds=[0], largest_drop=0.05, use_strong=True, n_strong=3, n_adaptive=9)
    assert free_wins == ["G: 1 digit-budget pairs"]
    assert glued["strong_decision"] == "more than" and "on these 3 digits" in glued["strong_consequence"]
    assert "0 of the 1 defended models" in glued["gradient_sentence"]
