"""Chapter 6's readouts: the sentences and tables its prose shows, from small results."""

import numpy as np
import pandas as pd
import pytest

from helpers.studies.adaptive_readouts import (
    added_rows,
    blur_credit,
    cosine,
    design_glued,
    evaluation_text,
    gradient_additions,
    gradient_rows,
    measured_design_glued,
    median_sweep_sentence,
    middle_budget_glued,
    paper_attack_glued,
    square_wins,
    strong_glued,
    strong_readout,
)
from helpers.studies.cascade import Cascade
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


def _cascade(broke: dict[str, np.ndarray], n: int = 3) -> Cascade:
    return Cascade(budgets=np.array([0.0, 1.0]), after_pgd=np.ones((2, n), bool), broke=broke)


def _pairs(*broken: int, n: int = 3) -> np.ndarray:
    flags = np.zeros((2, n), bool)
    flags[1, list(broken)] = True
    return flags


def test_square_wins_and_what_each_gradient_added():
    none = np.zeros((2, 3), bool)
    found = _cascade({"APGD-CE exact": _pairs(0), "APGD-DLR exact": none, "APGD-CE BPDA": _pairs(1), "APGD-DLR BPDA": _pairs(2),
                      "Square": none})
    assert square_wins({"g": {0: found, 1: found}}) == {"g": 0}
    masked = _cascade({"APGD-CE exact": none, "Square": _pairs(1, 2)})
    assert square_wins({"m": {0: masked, 1: masked}}) == {"m": 4}  # summed over seeds
    assert gradient_additions({"g": {0: found}}, defended=["g"]) == {"g": (1, 2)}
    assert gradient_additions({"m": {0: masked}}, defended=["m"]) == {"m": (0, None)}  # BPDA did not run: a linear filter


def test_strong_glued_and_evaluation_text():
    glued = strong_glued(additions={"G": (3, 1)}, gradient_free_wins=[], largest_drop=0.01)
    assert "G: 3 with the exact gradient, 1 with BPDA" in glued["gradient_sentence"] and glued["largest_drop"] == 1.0
    assert "L: 2 with the exact gradient, BPDA not run" in strong_glued(additions={"L": (2, None)}, gradient_free_wins=[],
                                                                         largest_drop=0.0)["gradient_sentence"]
    assert "no sign of gradient masking" in glued["square_sentence"]
    glued = strong_glued(additions={}, gradient_free_wins=["G: 3 digit-budget pairs"], largest_drop=0.1)
    assert "C6 cannot be confirmed" in glued["square_sentence"]
    assert evaluation_text(n_digits=150, n_seeds=5).endswith("on 150 digits × 5 training seeds")


def test_added_rows_and_the_design_glue():
    found = _cascade({"APGD-CE exact": _pairs(0, 1), "Square": _pairs(2)})
    found = Cascade(budgets=found.budgets, after_pgd=np.array([[True, True, True, False], [True, True, True, False]]),
                    broke={"APGD-CE exact": _pairs(0, 1, n=4), "Square": _pairs(2, n=4)})
    rows = added_rows({"g": {0: found, 1: found}}, names={"g": "G"})
    assert rows == [{"model": "G", "attack": "PGD worst", "pairs": 0}, {"model": "G", "attack": "APGD-CE exact", "pairs": 4},
                    {"model": "G", "attack": "Square", "pairs": 2}]
    glued = design_glued(n_digits=150, n_seeds=5, n_models=3)
    assert glued["design_detectable"] > glued["design_se"] > 0 and glued["design_digits"] == 150


def test_measured_design_says_whether_the_run_detects_gains_below_the_bar():
    from helpers.studies.shares import C6Design

    planned = C6Design(n_digits=150, n_seeds=5, n_models=3, standard_error=0.012, detectable=0.039)
    wide = {"G": C6Design(150, 5, 3, 0.015, 0.049), "H": C6Design(150, 5, 3, 0.018, 0.058)}
    text = measured_design_glued(wide, planned)["design_measured"]
    assert "is 4.9 points for G and 5.8 points for H (planned 3.9; standard errors 1.5–1.8 points against 1.2 planned)" in text
    assert "For H that is not below the 5-point bar" in text
    text = measured_design_glued({"G": C6Design(150, 5, 3, 0.011, 0.036)}, planned)["design_measured"]
    assert "errors 1.1 points" in text and "All lie below the 5-point bar, as planned." in text and "not below" not in text
    assert "cannot check the plan" in measured_design_glued({}, planned)["design_measured"]


def test_middle_budget_glued_reads_the_worst_case_at_the_middle_budget():
    curves = pd.DataFrame([{"model": m, "attack": a, "budget": b, "accuracy": acc}
                           for m, acc in (("none", 0.1), ("g", 0.3), ("h", 0.2)) for a in ("worst", "noise")
                           for b in (0.0, 1.0, 2.0, 3.0)])
    mid, glued = middle_budget_glued(curves, budgets=[0.0, 1.0, 2.0, 3.0], defended=["g", "h"], names={"g": "G", "h": "H"})
    assert mid == 2.0 and glued["mid_best_label"] == "G"
    assert glued["mid_none"] == pytest.approx(10) and glued["mid_best"] == pytest.approx(30)


def test_strong_readout_names_square_wins_and_glues_the_sentences():
    none = np.zeros((2, 3), bool)
    found = _cascade({"APGD-CE exact": none, "APGD-CE BPDA": _pairs(0), "Square": _pairs(1)})
    flags = {"g": {"PGD worst": {0: found.after_pgd}, "worst": {0: found.worst}}}
    free_wins, glued = strong_readout({"g": {0: found}}, flags, names={"g": "G"}, defended=["g"])
    assert free_wins == ["G: 1 digit-budget pairs"]
    assert glued["largest_drop"] == pytest.approx(200 / 3)  # two of the three digits broken at ε = 1
    assert "G: 0 with the exact gradient, 1 with BPDA" in glued["gradient_sentence"]
