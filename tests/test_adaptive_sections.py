"""Chapter 6's loops as functions, and its figures: on tiny untrained models and small arrays, no training."""

from types import SimpleNamespace

import keras
import numpy as np
import pandas as pd
import pytest

from helpers.book.adaptive_figures import curves_figure, gain_figure, gradient_figure, sweep_figure
from helpers.defences.filters import Defence
from helpers.studies.adaptive_readouts import gradient_maps, pixel_sweep
from helpers.studies.adaptive_sections import (
    NOISE_CONTROL,
    best_success,
    chapter6_checks,
    chapter6_image_rows,
    curve_table,
    every_curve,
    paper_attack_rows,
    pgd_flags,
    seed_mean,
    study_models,
    transfer_control_rows,
)
from helpers.studies.adaptive_study import Gain
from helpers.studies.sanity import SQUARE_MASKING_CHECK, failed_positive_only


def _model(seed: int = 0, defence: str = "none") -> keras.Model:
    keras.utils.set_random_seed(seed)
    blur = Defence.parse(defence).layer()
    return keras.Sequential([keras.Input((4, 4, 1)), *([blur] if blur is not None else []), keras.layers.Flatten(),
                             keras.layers.Dense(3)])


@pytest.fixture(scope="module")
def digits():
    rng = np.random.default_rng(0)
    return rng.random((6, 4, 4, 1)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2])


def test_transfer_control_rows_feed_every_set_to_every_receiver_and_a_noise_control(digits):
    x, y = digits
    targets = (y + 1) % 3
    source = _model(0)
    sets = {"boundary": (x * 0.99, np.ones(6, bool)), "confident": (x * 0.9, np.arange(6) < 2)}
    rows = transfer_control_rows(sets, images=x, labels=y, targets=targets, receivers=[("G", "defended", 0, _model(1))],
                                 source=source, source_label="none", seed=0)
    assert [(r["images"], r["role"], r["n"]) for r in rows] == [("boundary", "defended", 6), ("boundary", NOISE_CONTROL, 6),
                                                                ("confident", "defended", 2), ("confident", NOISE_CONTROL, 2)]
    assert all(0 <= r["correct"] <= 1 and 0 <= r["still_target"] <= 1 for r in rows)


def test_paper_attack_rows_attack_the_defended_models_with_both_gradients(digits):
    x, y = digits
    rows = paper_attack_rows({"none": _model(0), "gaussian:1.5": _model(1, "gaussian:1.5")}, defended=["gaussian:1.5"],
                             names={"none": "no defence", "gaussian:1.5": "G"}, images=x, labels=y, n_images=4, seed=0,
                             step=0.5, max_steps=5, n_bootstrap=20)
    assert [(r["model"], r["gradient"]) for r in rows] == [("no defence", "exact"), ("G", "exact"), ("G", "BPDA")]
    assert {"success_rate", "median_l2", "median_l2_lo", "median_l2_hi"} <= set(rows[0])
    assert best_success([{"defence": "g", "success_rate": 0.5}, {"defence": "g", "success_rate": 0.7}], {"g": "G"}) == {"G": 0.7}


def test_pgd_flags_seed_means_and_curves():
    result = lambda flags: SimpleNamespace(correct=np.asarray(flags))  # noqa: E731
    study = SimpleNamespace(attacks={"m": {"exact": result([[1, 1], [1, 0]]), "BPDA": result([[1, 1], [0, 1]])}},
                            noise={"m": result([[1, 1], [1, 1]])}, worst=lambda spec: np.array([[1, 1], [0, 0]]))
    found = pgd_flags({0: study, 1: study}, "m", seeds=[0, 1])
    assert list(found) == ["exact", "BPDA", "worst", "noise"] and list(found["worst"]) == [0, 1]
    assert seed_mean(found["exact"]).tolist() == [1.0, 0.5]
    assert list(every_curve(found)) == ["exact, seed 0", "exact, seed 1", "BPDA, seed 0", "BPDA, seed 1", "worst, seed 0",
                                        "worst, seed 1"]


def test_chapter6_image_rows_cover_every_digit_for_pgd_and_the_strongest_worst_case():
    pick, labels = np.array([7, 3, 5]), np.array([1, 2, 3])
    rows = chapter6_image_rows(model="m", seed=0, model_file="f", pick=pick, labels=labels, budgets=[0.0, 1.0],
                               pgd_worst=np.array([[1, 1, 1], [1, 0, 1]], bool), strong_budgets=[0.0, 2.0],
                               strong_worst=np.array([[1, 1, 1], [0, 0, 1]], bool))
    assert [(r["evaluation"][:3], r["test_index"], r["budget"], r["broken"]) for r in rows] == [
        ("cle", 7, 0.0, False), ("cle", 3, 0.0, False), ("cle", 5, 0.0, False),  # ε = 0: the clean digits
        ("PGD", 7, 1.0, False), ("PGD", 3, 1.0, True), ("PGD", 5, 1.0, False),
        ("str", 7, 2.0, True), ("str", 3, 2.0, True), ("str", 5, 2.0, False)]


def test_chapter6_figures_have_a_panel_per_model(digits):
    x, y = digits
    pixel, sweep, swept = pixel_sweep(x[0], ["gaussian:1.5", "median:3"], points=11)
    assert len(sweep) == 11 and set(swept) == {"gaussian:1.5", "median:3"} and x[0][pixel][0] == pytest.approx(
        x[0][..., 0].flat[np.argmin(np.abs(x[0][..., 0] - 0.5))])
    names = {"none": "no defence", "gaussian:1.5": "G", "median:3": "M"}
    assert len(sweep_figure(x[0], pixel, sweep, swept, names).axes) == 2
    maps = gradient_maps({"gaussian:1.5": _model(0, "gaussian:1.5")}, x[:1], y[:1], ["gaussian:1.5"])
    assert [m.shape for m in maps["gaussian:1.5"]] == [(4, 4)] * 3
    assert len(gradient_figure(x[0], maps, names).axes) == 4
    curves = pd.DataFrame([{"model": m, "attack": a, "budget": b, "accuracy": 0.5, "low": 0.4, "high": 0.6}
                           for m in ("none", "gaussian:1.5") for a in ("worst", "exact", "noise") for b in (0.0, 1.0)])
    assert len(curves_figure(curves, ["none", "gaussian:1.5"], names).axes) == 2
    gain = Gain(model="G", effect=0.1, low=0.05, high=0.15, p_value=0.01, p_holm=0.01, n_seeds=3, n_images=10)
    assert len(gain_figure({"G": gain}, statistic="robust share").axes) == 1


def test_chapter6_checks_read_every_curve_and_name_each_model():
    n = 10
    ones, half = np.ones((3, n), bool), np.stack([np.ones(n, bool), np.arange(n) < 5, np.arange(n) < 2])
    pgd = {s: {"exact": {0: half}, "worst": {0: half}, "noise": {0: ones}} for s in ("none", "g")}
    strong = {s: {"worst": {0: half[:2]}} for s in ("none", "g")}
    checks = chapter6_checks(
        budgets=[0.0, 1.0, 2.0], names={"none": "N", "g": "G"}, defended=["g"],
        paper_rows=[{"defence": "none", "success_rate": 1.0}, {"defence": "g", "success_rate": 1.0}], pgd=pgd, strong_flags=strong,
        more_effort={"N": (np.array([0.5]), np.array([0.5])), "G": (np.array([0.5]), np.array([0.5]))},
        square_reach={"N": (np.array([0.5]), np.array([0.55]))}, transferred={"g": np.array([1.0, 0.9])}, zero_gradients={"N": (0, 10), "G": (0, 10)}, n_images=n, n_strong=n,
        square_masking={"G": (np.array([0.5, 0.2]), np.array([0.4, 0.2]))}, n_first=10)
    assert {c["model"] for c in checks} == {"N", "G"}
    # The stronger Square broke one of the first 10 digits at ε = 1: one digit is the noise the check tolerates.
    masking = [c for c in checks if c["check"] == SQUARE_MASKING_CHECK]
    assert [(c["model"], c["passed"]) for c in masking] == [("G", True)]
    assert masking[0]["value"] == pytest.approx(0.1) and masking[0]["threshold"] == pytest.approx(0.1)
    assert all({"check", "passed", "value", "threshold", "margin"} <= set(c) for c in checks)
    assert all((c["margin"] >= 0) == c["passed"] for c in checks if "noise" not in c["check"])  # the margin says which side


def test_chapter_tables_format_the_rows():
    from helpers.book.adaptive_tables import checks_view, gain_view, paper_attack_view, strong_view, transfer_view

    summary = pd.DataFrame([{"images": "b", "role": "defended", "receiver": "G", "still_target": 0.1, "correct": 0.8}])
    assert "classified correctly" in transfer_view(summary).to_html()
    paper = pd.DataFrame([{"model": "N", "gradient": "exact", "n_attacked": 4, "success_rate": 1.0, "median_l2": 1.234,
                           "median_l2_lo": 1.0, "median_l2_hi": 1.5, "mean_steps": 12.0}])
    assert "[1.00, 1.50]" in paper_attack_view(paper).to_html()
    curves = pd.DataFrame([{"label": "G", "attack": a, "budget": e, "accuracy": acc} for a, acc in
                           (("PGD worst", 0.5), ("APGD-CE exact", 0.25), ("worst", 0.25)) for e in (1.0, 2.0)])
    shown = strong_view(curves, added=[{"model": "G", "attack": "APGD-CE exact", "pairs": 3}])
    assert list(shown.data["attack"]) == ["PGD, both gradients", "+ APGD-CE exact"]  # the worst case is the last row
    assert shown.data["pairs it broke first"].tolist()[1] == 3
    assert "ε = 2" in shown.to_html() and "25.0%" in shown.to_html()
    view = checks_view([{"check": "c", "model": "G", "measured": "1", "passed": False, "value": 1, "threshold": 0, "margin": -1}]).to_html()
    assert "✗ FAIL" in view and "-1" in view
    at_threshold = checks_view([{"check": "c", "model": "G", "measured": "2%", "passed": True, "value": 0.02,
                                 "threshold": 0.02 + 1e-12, "margin": 1e-12}]).to_html()
    assert "+0<" in at_threshold and "e-12" not in at_threshold  # the float allowance is not shown as a margin
    gain = Gain(model="G", effect=0.1, low=0.05, high=0.15, p_value=0.01, p_holm=0.02, n_seeds=3, n_images=10)
    assert "+10.0%" in gain_view({"G": gain}, {"G": np.array([[0.5, 0.7]])}).to_html()


def test_study_models_group_by_defence_and_seed_and_curve_table_keeps_the_order():
    fits = {(spec, k): SimpleNamespace(model=f"{spec}/{k}", path=f"{spec}-{k}.keras") for spec in ("none", "gaussian:1.5") for k in (3, 4)}
    grouped = study_models(fits, roles=["none", "gaussian:1.5"], seeds=[3, 4])
    assert grouped.by_seed["gaussian:1.5"] == {3: "gaussian:1.5/3", 4: "gaussian:1.5/4"}
    assert grouped.files["none"][4].name == "none-4.keras" and grouped.job(len, "none", 3).model == "none/3"
    assert grouped.models == {"none": "none/3", "gaussian:1.5": "gaussian:1.5/3"}
    assert grouped.defended == ["gaussian:1.5"] and grouped.names["none"] == Defence.parse("none").label
    flags = np.array([[True, True, True], [True, False, False]])
    rows = curve_table({"none": {"worst": {0: flags, 1: flags}}, "g": {"worst": {0: flags, 1: flags}}}, names={"none": "N", "g": "G"},
                       images="all", budgets=[0.0, 1.0], n_resamples=10, seed=0)
    assert [r["model"] for r in rows][:1] == ["none"] and rows[-1]["model"] == "g"
    assert {r["label"] for r in rows} == {"N", "G"} and {r["images"] for r in rows} == {"all"}


SETTINGS = {"steps": 3, "restarts": 1, "square_queries": 10, "square_restarts": 1, "seed": 0}


def _tiny_study(digits, seeds=(0, 1)):
    """Two models (none, Gaussian) × ``seeds`` on six 4×4 digits: the PGD study, its flags and the strong study."""
    from helpers.attacks.adaptive import robustness_study
    from helpers.studies.adaptive_sections import strong_study
    from helpers.studies.shares import study_digits

    x, y = digits
    fits = {(spec, k): SimpleNamespace(model=_model(k + 2 * i, spec), path=f"/nowhere/{spec}-{k}.keras")
            for i, spec in enumerate(["none", "gaussian:1.5"]) for k in seeds}
    grouped = study_models(fits, roles=["none", "gaussian:1.5"], seeds=list(seeds))
    chosen = study_digits(x, y, n_adaptive=6, strong_images=4, seed=0)
    budgets = [0.0, 0.5, 1.0]
    studies = {k: robustness_study({s: grouped.by_seed[s][k] for s in grouped.by_seed}, chosen.images, chosen.labels,
                                   budgets=budgets, steps=3, noise_draws=1, seed=0) for k in seeds}
    pgd = {s: pgd_flags(studies, s, seeds=list(seeds)) for s in grouped.by_seed}
    strong = strong_study(grouped, chosen, pgd=pgd, budgets=budgets, grid=np.array([0.0, 1.0]), settings=SETTINGS)
    return fits, grouped, chosen, budgets, studies, pgd, strong


@pytest.mark.slow
def test_strong_study_runs_every_attack_on_every_digit_model_and_seed_and_never_beats_its_worst_case(digits):
    from helpers.studies.adaptive_sections import square_alone

    _, grouped, chosen, budgets, _, pgd, strong = _tiny_study(digits)
    assert strong.at == [0, 2] and list(strong.cascades) == ["none", "gaussian:1.5"]
    # BPDA runs only where the filter is not linear (tests/test_adaptive.py): not on the Gaussian.
    assert set(strong.cascades["gaussian:1.5"][1].broke) == set(strong.cascades["none"][1].broke)
    assert not any("BPDA" in name for name in strong.cascades["gaussian:1.5"][1].broke)
    # Square alone on the undefended model's first seed, every digit: what the reach check compares.
    alone = square_alone(grouped.by_seed["none"][0], chosen.images, chosen.labels, budgets=[0.0, 1.0], settings=SETTINGS)
    assert np.array_equal(strong.square_alone, alone) and alone[0] == strong.flags["none"]["PGD worst"][0][0].mean()
    for spec, flags in strong.flags.items():
        for k in (0, 1):
            worst = flags["worst"][k]
            assert worst.shape == (2, 6)  # every digit, not a subset
            assert not (worst & ~flags["PGD worst"][k]).any()  # the worst case is at most PGD's
            assert not (worst & ~flags["gradient worst"][k]).any()
            assert np.array_equal(flags["PGD worst"][k], pgd[spec]["worst"][k][[0, 2]])


@pytest.mark.slow
def test_pgd_studies_one_job_per_model_and_seed_equal_the_study_of_all_models_at_once(digits):
    from helpers.studies.adaptive_sections import pgd_studies

    _, grouped, chosen, budgets, studies, _, _ = _tiny_study(digits)
    again = pgd_studies(grouped, chosen.images, chosen.labels, budgets=budgets, steps=3, noise_draws=1, seed=0, processes=1)
    assert list(again) == [0, 1]
    for k, study in again.items():
        assert list(study.attacks) == list(studies[k].attacks) == ["none", "gaussian:1.5"]
        for spec, by in study.attacks.items():
            assert list(by) == list(studies[k].attacks[spec])
            assert all(np.array_equal(r.adversarial, studies[k].attacks[spec][a].adversarial) for a, r in by.items())
            assert np.array_equal(study.noise[spec].correct, studies[k].noise[spec].correct)


@pytest.mark.slow
def test_chapter6_sanity_c6_claim_and_image_rows_from_the_tiny_study(digits):
    from helpers.studies.adaptive_sections import c6_claim, chapter6_images, chapter6_sanity, pooled

    fits, grouped, chosen, budgets, studies, pgd, strong = _tiny_study(digits)
    paper = [{"defence": s, "success_rate": 1.0} for s in grouped.by_seed]
    checks = chapter6_sanity(grouped, chosen, strong, studies=studies, pgd=pgd, paper_rows=paper, budgets=budgets,
                             settings=SETTINGS, n_images=6)
    assert {c["model"] for c in checks} == set(grouped.names.values()) and all("passed" in c for c in checks)
    reach = [c for c in checks if "gradient-free attack alone" in c["check"]]
    assert [c["model"] for c in reach] == [grouped.names["none"]]  # Square alone is checked on the undefended model
    claim = c6_claim(grouped, strong, checks=checks, gradient_free_wins=[], n_resamples=50, seed=0)
    assert claim.verdict["verdict"] in {"confirmed", "partly", "refuted", "inconclusive"}
    assert "6 digits × 2 seeds" in claim.verdict["evidence"] and "power" in claim.verdict["evidence"]
    assert claim.design.n_digits == 6 and claim.design.n_seeds == 2
    assert set(claim.shares) == set(grouped.names.values()) and claim.shares[grouped.names["none"]].shape[0] == 2
    assert "ε ∈ {1}" in claim.statistic
    rows = chapter6_images(fits, chosen, strong, pgd=pgd, budgets=budgets)
    assert len(rows) == 2 * 2 * (3 * 6 + 1 * 6)  # models × seeds × (clean + PGD budgets > 0 + strong budgets > 0) × digits
    assert rows[0]["model_file"].endswith("none-0.keras")
    table = curve_table(pgd, names=grouped.names, images="all", budgets=budgets, n_resamples=20, seed=0)
    assert set(pooled(table, seeds=[0, 1])["seed"]) == {"all"}
    assert set(pooled(table, seeds=[1])["seed"]) == {"1"}


def test_transfer_controls_send_chapter_ones_digits_to_every_defended_model_and_the_controls(digits):
    from helpers.studies.adaptive_sections import transfer_controls

    x, y = digits
    fits = {(s, k): SimpleNamespace(model=_model(k, s), path=f"{s}-{k}.keras") for s in ["none", "gaussian:1.5"] for k in (0, 1)}
    grouped = study_models(fits, roles=["none", "gaussian:1.5"], seeds=[0, 1])
    ok = np.array([True, True, False, True, False, False])
    adversarial = {"success": ok, "images": x, "labels": y, "targets": (y + 1) % 3, "adversarial": x * 0.95}
    found = transfer_controls(adversarial, source=grouped.models["none"], others={1: grouped.by_seed["none"][1]},
                              models=grouped, margin=1.0, step=0.5, max_steps=5, seed=0)
    assert found.n_transferred == 3 and 0 <= found.n_confident <= 3
    assert found.kinds == ["boundary (chapter 1)", "high-confidence (κ = 1)"]
    roles = [r["role"] for r in found.rows if r["images"] == found.kinds[0]]
    assert roles == ["defended", "defended", "control: another training seed", NOISE_CONTROL]


def test_square_left_runs_the_gradient_free_attacks_only_on_the_pairs_left(monkeypatch):
    from helpers.attacks import registry
    from helpers.core.contract import RobustnessResult
    from helpers.studies import adaptive_sections

    seen = []

    def run(model, images, labels, *, budgets, settings):
        seen.append((float(budgets[-1]), labels.tolist(), settings["square_queries"]))
        correct = np.repeat((labels != 1)[None], len(budgets), axis=0)  # breaks every digit labelled 1
        n = len(labels)
        return RobustnessResult(budgets=np.asarray(budgets), correct=correct, success=~correct,
                                adversarial=np.zeros((len(budgets), n, 1, 1, 1)), l2=np.zeros((len(budgets), n)), gradient_norm=np.zeros(n))

    spec = registry.AttackSpec("S", "S", "fixed_budget", "none", run)
    monkeypatch.setattr(adaptive_sections, "attacks_of", lambda kind: [spec])
    left = np.array([[1, 1, 1, 1], [1, 1, 0, 1], [0, 1, 0, 0]], bool)  # ε = 0, 1, 2
    accuracy = adaptive_sections.square_left(None, np.zeros((4, 1, 1, 1), np.float32), np.array([0, 1, 2, 1]), left,
                                             budgets=[0.0, 1.0, 2.0], settings={"square_queries": 5000})
    assert seen == [(1.0, [0, 1, 1], 5000), (2.0, [1], 5000)]
    assert accuracy.tolist() == [1.0, 0.25, 0.0]
    # A failed masking check forbids a positive verdict only.
    assert failed_positive_only([{"check": SQUARE_MASKING_CHECK, "model": "G", "passed": False}]) == [f"{SQUARE_MASKING_CHECK} (G)"]
