"""Chapter 9's reading of the results files, and chapters 1 and 5's tables, on small synthetic rows."""

import math

import pytest

from helpers.book import conclusion, notebook, tables
from helpers.studies.verdicts import RMS_THRESHOLD, STRONG_IMAGES, TRANSFER_HELP_MARGIN


def _verdict(key, verdict, *, measure="—", effect="", low="", high="", evidence="e — more; rest"):
    return {"claim": f"{key}: text", "measure": measure, "verdict": verdict, "effect": effect, "low": low, "high": high,
            "rule": f"rule {key}", "evidence": evidence}


VERDICT_ROWS = [
    _verdict("C1", "partly"), _verdict("C2", "inconclusive"),
    _verdict("C3", "confirmed", measure="paper", evidence="σ: accuracy -1.0%"),
    _verdict("C3", "refuted", measure="strongest", evidence="σ: accuracy -2.0%"),
    _verdict("C4", "refuted", measure="accuracy", effect=-0.03, low=-0.05, high=-0.01),
    _verdict("C5", "inconclusive", measure="strongest", effect=0.1, low=-0.2, high=0.3),
    _verdict("C6", "refuted", measure="robust share"), _verdict("C7", "refuted", measure="robust share"),
]


def test_by_claim_keeps_the_strongest_row_and_finding_words_the_number():
    claims = conclusion.by_claim(VERDICT_ROWS)
    assert list(claims.index) == ["C1", "C2", "C3", "C4", "C5", "C6", "C7"] and claims.loc["C3", "verdict"] == "refuted"
    assert conclusion.claim_key("C3: Training") == "C3"
    assert conclusion.finding(claims.loc["C3"]) == "accuracy −2.0% against no filter"
    assert conclusion.finding(claims.loc["C4"]) == "Gaussian minus median accuracy −3.0% [−5.0%, −1.0%]"
    assert conclusion.finding(claims.loc["C5"]).endswith("[−20.0%, +30.0%] on the strongest attack")
    assert conclusion.finding(claims.loc["C1"]) == "e"  # no effect: the evidence's first clause


def test_verdict_glue_counts_each_claim_once_and_phrases_the_summary():
    glued = conclusion.verdict_glue(VERDICT_ROWS)
    assert glued["n_claims"] == 7 and (glued["n_refuted"], glued["n_confirmed"], glued["n_partly"]) == (4, 0, 1)
    assert glued["refuted_keys"] == "C3, C4, C6, C7" and glued["paper_refuted_keys"] == "C3, C4"
    assert glued["confirmed_keys"] == "none"
    assert glued["verdict_summary"] == ("Of the 7 claims, 0 are confirmed (none), 1 holds in part (C1), 4 are contradicted "
                                        "by our measurements (C3, C4, C6, C7) and 2 cannot be decided by this run (C2, C5).")
    assert glued["twice_sentence"].startswith("C3 is judged on two measures") and " has two rows" in glued["twice_sentence"]
    assert glued["end_C1_evidence"] == "E — more; rest" and glued["end_C4_rule"] == "rule C4"
    assert glued["c6_sentence"] == conclusion.CLAIM_SENTENCES["C6"]["refuted"]
    assert conclusion.twice_sentence([]) == "" and " are judged " in conclusion.twice_sentence(["C3", "C5"])


def test_attack_and_defence_glue():
    attack = [{"model": "small_cnn", "dataset": "mnist", "success_rate": "1.0", "n_attacked": "50.0", "median_l2": "1.5",
               "median_rms": "0.02"}, {"model": "vgg16", "dataset": "mnist", "success_rate": "0.5", "n_attacked": "5",
                                        "median_l2": "1", "median_rms": "0.1"}]
    glued = conclusion.attack_glue(attack)
    assert (glued["cnn_success"], glued["cnn_n"], glued["n_arch"], glued["study_model"]) == (100.0, 50, 1, "small_cnn")
    assert glued["cnn_rms255"] == pytest.approx(5.1) and glued["rms_limit255"] == pytest.approx(RMS_THRESHOLD * 255)
    scores = [{"defence": "none", "label": "no filter", "clean_accuracy": "0.9", "mean_l2": "1", "score": "0.9"},
              {"defence": "gaussian:1", "label": "σ 1", "clean_accuracy": "0.8", "mean_l2": "2", "score": "1.6"}]
    glued = conclusion.defence_glue(scores, {"best_gaussian": "gaussian:1"})  # no σ = 1.5 in the grid: the best Gaussian
    assert (glued["paper_label"], glued["acc_paper"], glued["l2_none"], glued["best_label"]) == ("σ 1", 80.0, 1.0, "σ 1")


def _curve(model, budget, accuracy, *, images=STRONG_IMAGES):
    return {"model": model, "label": model.upper(), "attack": "worst", "seed": "all", "images": images, "budget": budget,
            "accuracy": accuracy}


def test_adaptive_glue_takes_the_nearest_budget_and_compares_the_papers_sigma_with_no_filter():
    curves = [_curve(m, b, a) for m, accs in (("none", (0.6, 0.2)), ("gaussian:1.5", (0.4, 0.1)), ("median:3", (0.7, 0.3)))
              for b, a in zip((0.5, 1.0), accs, strict=True)] + [_curve("none", 0.5, 0.99, images="all")]
    adaptive = {"reference_budget": 0.9, "C6": {"measure": "robust share over ε ∈ {0.5, 1.0}"}}
    glued = conclusion.adaptive_glue(adaptive, curves)
    assert glued["ref_eps"] == 1.0 and glued["ref_none"] == pytest.approx(20.0)
    assert (glued["ref_best_label"], glued["ref_best"]) == ("MEDIAN:3", pytest.approx(30.0))
    assert glued["ref_attack"].startswith("the worst case of every attack")
    # The median keeps more than both: it is named first, then the paper's σ = 1.5.
    assert ("the most robust filter, MEDIAN:3, keeps a robust share of 50% of the digits against 40% without any filter, "
            "but the paper's own choice, GAUSSIAN:1.5, keeps 25%: ") in glued["paper_sigma_sentence"]
    assert glued["paper_sigma_sentence"].endswith("less robust, not more.")
    alone = conclusion.adaptive_glue(adaptive, [c for c in curves if c["model"] != "median:3"])
    assert alone["paper_sigma_sentence"].startswith("On the attack the C6 verdict stands on, the paper's own choice, GAUSSIAN:1.5, "
                                                    "keeps a robust share of 25% of the digits against 40% without any filter: ")


def _transfer(images, role, receiver, still_target, correct):
    return {"images": images, "role": role, "receiver": receiver, "still_target": still_target, "correct": correct}


def test_transfer_glue_compares_the_defended_models_with_the_controls():
    rows = [_transfer("boundary", "defended", "g", 0.2, 0.6), _transfer("boundary", "other seed", "s", 0.1, 0.7),
            _transfer("past", "defended", "g", 0.9, 0.3), _transfer("past", "noise", "n", 0.9, 0.3 - TRANSFER_HELP_MARGIN / 2)]
    glued = conclusion.transfer_glue(rows)
    assert glued["transfer_sentence"] == "Most of them no longer fool a blurred model"
    assert (glued["transfer_target"], glued["transfer_correct"], glued["transfer_control"]) == pytest.approx((20.0, 60.0, 70.0))
    assert glued["transfer_past_sentence"].endswith("even there the blur does no more than the controls.")
    helped = conclusion.transfer_glue(rows, fools_share=0.1, help_margin=0.0)
    assert helped["transfer_sentence"].startswith("Many") and "does help" in helped["transfer_past_sentence"]
    assert conclusion.transfer_glue(rows[:2])["transfer_past_sentence"] == ""


def test_alternatives_and_sanity_glue():
    rows = [{"seed": "all", "budget": b, "accuracy": a, "clean_accuracy": 0.9, "measure": m, "method": meth, "parameter": p}
            for b, a, m, meth, p in ((0.0, 0.9, "attacked", "blur", "gaussian:1"), (0.5, 0.3, "attacked", "blur", "gaussian:1"),
                                     (0.5, 0.6, "attacked", "adversarial training", "pgd"),
                                     (0.5, 0.5, "certified", "smoothing", "noise:0.25"), (1.0, 0.1, "attacked", "blur", "gaussian:1"))]
    glued = conclusion.alternatives_glue(rows)
    assert (glued["alt_eps"], glued["alt_blur"], glued["alt_at"], glued["alt_certified"]) == (0.5, 30.0, 60.0, 50.0)
    assert glued["alt_certified_label"] == "σ = 0.25"
    assert conclusion.sanity_glue([{"passed": True}, {"passed": False}]) == {"sanity_passed": 1, "sanity_total": 2}


def test_glue_all_glues_every_value_in_order(monkeypatch):
    seen = []
    monkeypatch.setattr(notebook, "glue", lambda name, value: seen.append((name, value)))
    notebook.glue_all({"b": 1, "a": "x"})
    assert seen == [("b", 1), ("a", "x")]


def test_tables_format_numbers_and_keep_their_columns():
    assert tables.shown(0.5, "{:.1%}") == "50.0%" and tables.shown(float("nan"), "{:.1f}") == "—"
    assert tables.shown("small_cnn", "{:.1f}") == "small_cnn"
    attack = tables.attack_table([{"model": "small_cnn", "clean_accuracy": 0.98, "median_rms": float("nan")}])
    assert attack.loc["clean accuracy", "small_cnn"] == "98.0%" and attack.loc["median RMS change per pixel", "small_cnn"] == "—"
    assert tables.with_ci(0.5, 0.25, 0.75, ".2f").startswith("0.50<br><span") and "[0.25, 0.75]" in tables.with_ci(0.5, 0.25, 0.75, ".2f")
    row = {"label": "no filter", "other_reading_mean_l2": 1.0}
    for name in ("clean_accuracy", "mean_l2", "score", "strongest_mean_l2", "strongest_score"):
        bounds = "accuracy" if name == "clean_accuracy" else name
        row |= {name: 0.5, f"{bounds}_lo": 0.4, f"{bounds}_hi": 0.6}
    shown = tables.score_table([row]).data
    assert list(shown.columns) == ["filter", "accuracy", "paper: mean ‖δ‖₂", "paper: score", "strongest: mean ‖δ‖₂",
                                   "strongest: score", "filtered input: mean ‖δ‖₂"]
    assert "[40.0%, 60.0%]" in shown.loc[0, "accuracy"] and shown.loc[0, "filtered input: mean ‖δ‖₂"] == "1.00"
    resolution = tables.resolution_table([{"resolution": 56, "sigma": 2.0, "relative_sigma": 1.0, "score": 0.5}], factor=2).data
    assert list(resolution.columns) == ["image size (px)", "σ", "σ ÷ 2", "score"]


def test_min_norm_table_has_a_column_per_attack_and_the_strongest():
    from helpers.studies import scores

    rows = [{"label": "no filter", "attack": a, "median_l2": 1.0} for a in (*scores.ATTACKS, "strongest")]
    wide = tables.min_norm_table(rows).data
    assert list(wide.columns) == [scores.ATTACK_LABELS[a] for a in (*scores.ATTACKS, "strongest")]
    assert math.isclose(wide.iloc[0, 0], 1.0)


def test_verdict_table_shows_what_each_interval_proves_under_the_coloured_verdict():
    from helpers.book.notebook import VERDICT_COLOURS, verdict_table

    rows = [{"claim": "C4: x", "measure": "accuracy", "verdict": "refuted", "effect": -0.04, "low": -0.07, "high": -0.01,
             "proves": "rules out an accuracy gain of +2.0% or more", "evidence": "e"},
            {"claim": "C1: y", "measure": "—", "verdict": "partly", "effect": float("nan"), "low": float("nan"),
             "high": float("nan"), "proves": float("nan"), "evidence": "f"}]
    html = verdict_table(rows).to_html()
    assert "Rules out an accuracy gain of +2.0% or more" in html and "<b>refuted</b>" in html
    assert VERDICT_COLOURS["refuted"] in html and VERDICT_COLOURS["partly"] in html
    assert "−4.0%" in html and "[−7.0%, −1.0%]" in html
