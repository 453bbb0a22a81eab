import numpy as np
import pytest

from helpers.studies.sanity import sanity_checks
from helpers.studies.verdicts import CLAIMS, adaptive_verdict, imperceptibility_verdict, verdict_rows


def _row(model, n, success, rms):
    return {"model": model, "n_attacked": str(n), "success_rate": str(success), "median_rms": str(rms)}


@pytest.mark.parametrize(
    "rows, verdict",
    [
        ([_row("inception_v3", 40, 1.0, 0.01), _row("vgg16", 40, 0.95, 0.02)], "confirmed"),
        ([_row("inception_v3", 40, 1.0, 0.01), _row("vgg16", 40, 1.0, 0.05)], "partly"),
        ([_row("small_cnn", 40, 1.0, 0.09)], "partly"),
        ([_row("small_cnn", 40, 0.2, 0.09)], "refuted"),
        ([_row("vgg16", 4, 1.0, 0.01)], "inconclusive"),  # too few images to count
        ([], "inconclusive"),
    ],
)
def test_imperceptibility_rule(rows, verdict):
    result = imperceptibility_verdict(rows)
    assert result["verdict"] == verdict
    assert all(row["model"] in result["evidence"] for row in rows)
    if rows:
        assert "8/255" in result["evidence"]


def _gain(effect, low, high, p_holm=0.001, name="g"):
    from helpers.studies.adaptive_study import Gain

    return Gain(model=name, effect=effect, low=low, high=high, p_value=p_holm, p_holm=p_holm, n_seeds=3, n_images=100)


def _c6(gains, **kwargs):
    return adaptive_verdict(gains, statistic="robust share", evaluation="PGD", **kwargs)


def test_adaptive_verdict_rule():
    helps, small = _gain(0.10, 0.06, 0.14), _gain(0.03, 0.01, 0.05)
    hurts, wide = _gain(-0.1, -0.2, -0.02), _gain(0.02, -0.1, 0.14)
    assert _c6({"g": helps})["verdict"] == "confirmed"
    direction = _c6({"g": _gain(0.08, 0.03, 0.13)})  # above 0, but gains under +5 points are not excluded
    assert direction["verdict"] == "partly" and "not the size" in direction["proves"]
    assert _c6({"g": small})["verdict"] == "partly"  # significant, but +5 points still fits
    assert _c6({"g": _gain(0.02, 0.01, 0.04)})["verdict"] == "refuted"  # a gain that matters is excluded
    assert _c6({"g": hurts, "m": _gain(0.0, -0.03, 0.03)})["verdict"] == "refuted"
    assert _c6({"g": wide})["verdict"] == "inconclusive"
    # The most favourable model decides; it needs its Holm-adjusted p below 0.05 as well.
    result = _c6({"m": hurts, "g": helps})
    assert result["verdict"] == "confirmed" and "most favourable: g" in result["evidence"]
    assert result["effect"] == 0.10 and result["n_seeds"] == 3 and result["n_images"] == 100
    assert "at least +5.0%" in result["proves"]
    assert _c6({"g": _gain(0.10, 0.06, 0.14, p_holm=0.06)})["verdict"] == "inconclusive"
    assert "rules out a gain of 5% or more" in _c6({"g": _gain(0.02, 0.01, 0.04)})["proves"]
    assert _c6({})["verdict"] == "inconclusive"


def test_failed_checks_and_a_stronger_gradient_free_attack_downgrade_the_verdict():
    helps, hurts = _gain(0.10, 0.06, 0.14), _gain(-0.1, -0.2, -0.07)
    failed = _c6({"g": helps}, failed_checks=["no zero gradient (g)"], n_checks=13)
    assert failed["verdict"] == "inconclusive" and "no zero gradient (g)" in failed["evidence"]
    assert "sanity checks passed: 12 of 13" in failed["evidence"]
    assert _c6({"g": hurts}, failed_checks=["x (g)"])["verdict"] == "inconclusive"
    masked = _c6({"g": helps}, gradient_free_wins=["g: 2 digit-budget pairs"])
    assert masked["verdict"] == "inconclusive" and "gradient-free" in masked["evidence"]
    assert _c6({"g": hurts}, gradient_free_wins=["g: 2"])["verdict"] == "refuted"  # it only forbids a positive verdict
    assert _c6({"g": _gain(0.08, 0.03, 0.13)}, gradient_free_wins=["g: 2"])["verdict"] == "inconclusive"
    weak = _c6({"g": helps}, weak_checks=["Square is weak (none)"])
    assert weak["verdict"] == "inconclusive" and "masking check failed, so masking is not ruled out" in weak["evidence"]
    refuted = _c6({"g": hurts}, weak_checks=["Square is weak (none)"], n_checks=13)
    assert refuted["verdict"] == "refuted"  # masking cannot make a blur look worse
    assert "sanity checks passed: 12 of 13 (failed, forbidding a positive verdict only: Square is weak (none))" in refuted["evidence"]


BUDGETS = [0.0, 1.0, 2.0, 4.0]
NONE = np.array([0.95, 0.6, 0.2, 0.0])
G = np.array([0.94, 0.7, 0.3, 0.02])


def _checks(**changes):
    args = {
        "budgets": BUDGETS,
        "unbounded_success": {"none": 1.0, "g": 1.0},
        "curves": {"none": {"exact": NONE}, "g": {"exact": G, "BPDA": np.array([0.94, 0.8, 0.4, 0.05])}},
        "worst": {"none": NONE, "g": G},
        "noise": {"none": np.array([0.95, 0.95, 0.9, 0.8]), "g": np.array([0.94, 0.94, 0.94, 0.9])},
        "more_effort": {"none": (np.array([0.95, 0.6]), np.array([0.95, 0.59])), "g": (np.array([0.94, 0.7]), np.array([0.94, 0.69]))},
        "square_reach": {"none": (np.array([0.6, 0.2]), np.array([0.65, 0.25]))},
        "transfer": {"g": (np.array([0.94, 0.7]), np.array([0.94, 0.9]))},
        "zero_gradients": {"none": (0, 40), "g": (0, 80)},
        "n_images": 100,
        "n_strong": 50,
    } | changes
    rows = sanity_checks(**args)
    return {(row["check"].split(" (")[0], row["model"]): row["passed"] for row in rows}


def test_sanity_checks_pass_on_a_sound_evaluation():
    results = _checks()
    assert len(results) == 7 + 7 and all(results.values())  # Square's reach on the undefended model, transfer on a defended one


@pytest.mark.parametrize(
    "changes, failing",
    [
        ({"unbounded_success": {"none": 1.0, "g": 0.95}}, ("the unbounded attack always succeeds", "g")),
        ({"more_effort": {"none": (np.array([0.95, 0.6]), np.array([0.95, 0.5])), "g": (np.array([0.9]), np.array([0.9]))}},
         ("twice the steps and restarts change little", "none")),
        ({"curves": {"none": {"x": np.array([0.9, 0.5, 0.6, 0.0])}, "g": {"exact": G}}}, ("a larger budget never raises accuracy", "none")),
        ({"worst": {"none": NONE, "g": np.array([0.94, 0.7, 0.3, 0.2])}}, ("accuracy reaches about 0 at the largest budget", "g")),
        ({"zero_gradients": {"none": (0, 40), "g": (3, 80)}}, ("no zero gradient, at the clean images or at random points", "g")),
        ({"noise": {"none": np.array([0.95, 0.5, 0.2, 0.0]), "g": np.array([0.94, 0.94, 0.94, 0.9])}},
         ("random noise of the same ‖δ‖₂ is far weaker", "none")),
        ({"transfer": {"g": (np.array([0.94, 0.7]), np.array([0.94, 0.6]))}}, ("white box is at least as strong as transfer", "g")),
        ({"square_reach": {"none": (np.array([0.6, 0.2]), np.array([0.6, 0.31]))}},
         ("the gradient-free attack alone comes close to the gradient attacks", "none")),
    ],
)
def test_each_sanity_check_can_fail(changes, failing):
    results = _checks(**changes)
    assert [key for key, ok in results.items() if not ok] == [failing]


def test_one_image_of_slack_only():
    key = ("a larger budget never raises accuracy", "none")
    assert _checks(curves={"none": {"x": np.array([0.9, 0.5, 0.51, 0.0])}, "g": {"e": G}}, n_images=100)[key]
    assert not _checks(curves={"none": {"x": np.array([0.9, 0.5, 0.52, 0.0])}, "g": {"e": G}}, n_images=100)[key]


def test_verdict_rows_cover_every_claim_in_order():
    rows = verdict_rows({"C3": {"verdict": "refuted", "evidence": "x"},
                         "C5": [{"verdict": "refuted", "evidence": "a", "measure": "paper", "effect": -0.2, "low": -0.3, "high": -0.1},
                                {"verdict": "inconclusive", "evidence": "b", "measure": "strongest"}]})
    assert [r["claim"].split(":")[0] for r in rows] == [*CLAIMS][:5] + ["C5", "C6", "C7"]
    from helpers.studies.results import VERDICTS

    assert list(rows[0]) == VERDICTS.column_names  # the layout of verdicts.csv
    assert rows[2]["verdict"] == "refuted" and rows[0]["verdict"] == "inconclusive"
    assert rows[4]["measure"] == "paper" and rows[4]["effect"] == -0.2 and rows[5]["measure"] == "strongest"
    with pytest.raises(ValueError, match="verdict"):
        verdict_rows({"C1": {"verdict": "maybe", "evidence": ""}})


# --- C2: VGG16 against InceptionV3 -----------------------------------------------------------------------------

def _rms(centre, n=40, spread=0.001):
    return centre + spread * np.random.default_rng(0).standard_normal(n)


@pytest.mark.parametrize(
    "vgg, inc, accuracy, verdict",
    [
        (_rms(0.05), _rms(0.02), 0.9, "confirmed"),  # clearly larger
        (_rms(0.02), _rms(0.05), 0.9, "refuted"),  # clearly smaller
        (_rms(0.030, spread=0.01), _rms(0.029, spread=0.01), 0.9, "inconclusive"),  # intervals straddle the 10 % line
        (_rms(0.05), _rms(0.02), 0.5, "inconclusive"),  # models too weak to compare
    ],
)
def test_architecture_rule(vgg, inc, accuracy, verdict):
    from helpers.studies.verdicts import architecture_verdict

    result = architecture_verdict({"vgg16": accuracy, "inception_v3": accuracy}, {"vgg16": vgg, "inception_v3": inc},
                                  sizes={"vgg16": 75, "inception_v3": 75})
    assert result["verdict"] == verdict, result
    assert ("too weak" in result["evidence"]) == (accuracy < 0.6)


def test_architecture_rule_needs_both_models_the_same_size_and_a_majority_of_successes():
    from helpers.studies.verdicts import architecture_verdict

    sizes = {"vgg16": 75, "inception_v3": 75}
    assert architecture_verdict({"vgg16": 0.9}, {"vgg16": _rms(0.05)}, sizes=sizes)["verdict"] == "inconclusive"
    rms = {"vgg16": _rms(0.05), "inception_v3": _rms(0.02)}
    other = architecture_verdict({"vgg16": 0.9, "inception_v3": 0.9}, rms, sizes={"vgg16": 32, "inception_v3": 75})
    assert other["verdict"] == "inconclusive" and "different image sizes" in other["evidence"]
    failing = dict(rms, vgg16=np.where(np.arange(40) < 25, np.inf, rms["vgg16"]))  # 25 of 40 failed
    assert "half of the images or fewer" in architecture_verdict({"vgg16": 0.9, "inception_v3": 0.9}, failing, sizes=sizes)["evidence"]
    some = dict(rms, vgg16=np.where(np.arange(40) < 5, np.inf, rms["vgg16"]))  # failures count as infinitely far
    assert architecture_verdict({"vgg16": 0.9, "inception_v3": 0.9}, some, sizes=sizes)["verdict"] == "confirmed"


# --- C3–C5: chapter 5's score table ----------------------------------------------------------------------------

def _score_row(defence, accuracy, l2, *, lo=None, hi=None, std=0.005):
    from helpers.defences.filters import Defence

    d = Defence.parse(defence)
    lo, hi = (l2 - 0.1 if lo is None else lo), (l2 + 0.1 if hi is None else hi)
    return {"defence": str(d), "label": d.label, "kind": d.kind, "clean_accuracy": accuracy, "accuracy_std": std,
            "mean_l2": l2, "mean_l2_lo": lo, "mean_l2_hi": hi, "score": accuracy * l2, "score_lo": accuracy * lo,
            "score_hi": accuracy * hi}


def test_best_by_kind_picks_the_first_highest_finite_score():
    from helpers.studies.verdicts import best_by_kind

    base = [_score_row("none", 0.98, 2.0), _score_row("median:3", 0.97, 2.2)]
    far = base + [_score_row("gaussian:1.5", 0.98, 2.0, lo=1.9, hi=2.1), _score_row("gaussian:3", 0.98, 4.0, lo=3.9, hi=4.1)]
    assert best_by_kind(far) == {"best_defence": "gaussian:3", "best_gaussian": "gaussian:3", "best_median": "median:3"}
    nan = [_score_row(spec, 0.4, float("nan")) for spec in ("none", "gaussian:1.5")]
    assert best_by_kind(nan) == {"best_defence": None, "best_gaussian": None, "best_median": None}


# --- Interval rules (C3–C5 on both measures) -------------------------------------------------------------------

from helpers.studies.verdicts import (  # noqa: E402
    Estimate,
    best_filter_verdict,
    decide,
    keeps_accuracy_and_enlarges_verdict,
    more_accurate_verdict,
)


@pytest.mark.parametrize(
    "estimate, verdict",
    [
        (Estimate(0.15, 0.10, 0.25), "confirmed"),  # the whole interval at or above 10 %
        (Estimate(0.15, 0.05, 0.25), "partly"),  # above 0, but effects under 10 % are not excluded: direction only
        (Estimate(0.05, 0.01, 0.09), "refuted"),  # real but too small to matter: the whole interval below 10 %
        (Estimate(0.15, -0.02, 0.30), "inconclusive"),  # overlaps 0
        (Estimate(0.08, 0.01, 0.20), "partly"),  # above 0; 10 % neither shown nor excluded
        (Estimate(-0.2, -0.3, -0.1), "refuted"),
        (Estimate(float("nan"), 0.1, 0.2), "inconclusive"),
    ],
)
def test_decide(estimate, verdict):
    assert decide(estimate, minimum=0.10) == verdict


def test_keeps_accuracy_and_enlarges():
    big = Estimate(0.2, 0.1, 0.3)
    assert keeps_accuracy_and_enlarges_verdict(Estimate(-0.005, -0.015, 0.005), big)[0] == "confirmed"
    direction = keeps_accuracy_and_enlarges_verdict(Estimate(-0.005, -0.015, 0.005), Estimate(0.108, 0.065, 0.153))
    assert direction[0] == "partly" and "a loss of accuracy beyond 2% is ruled out" in direction[2]
    assert "not the size" in direction[2]
    assert keeps_accuracy_and_enlarges_verdict(Estimate(-0.01, -0.03, 0.01), big)[0] == "inconclusive"  # may lose > 2 points
    assert keeps_accuracy_and_enlarges_verdict(Estimate(-0.05, -0.06, -0.04), big)[0] == "refuted"  # loses > 2 points
    assert keeps_accuracy_and_enlarges_verdict(Estimate(0.0, -0.01, 0.01), Estimate(0.02, 0.0, 0.05))[0] == "refuted"
    verdict, rule, shown = keeps_accuracy_and_enlarges_verdict(Estimate(0.0, -0.01, 0.01), Estimate(0.2, -0.1, 0.5))
    assert verdict == "inconclusive" and "2%" in rule and "10%" in rule and "establishes neither" in shown


def test_more_accurate_and_best_filter():
    assert more_accurate_verdict(Estimate(0.03, 0.021, 0.04))[0] == "confirmed"
    refuted = more_accurate_verdict(Estimate(0.01, 0.005, 0.015))
    assert refuted[0] == "refuted" and "rules out an accuracy gain of +2.0% or more" in refuted[2]  # a 2-point gain is excluded
    assert more_accurate_verdict(Estimate(-0.04, -0.07, -0.007))[0] == "refuted"
    assert more_accurate_verdict(Estimate(0.02, -0.01, 0.05))[0] == "inconclusive"
    assert best_filter_verdict(Estimate(0.2, 0.12, 0.3))[0] == "confirmed"
    assert best_filter_verdict(Estimate(-0.1, -0.15, -0.05))[0] == "refuted"  # the rival is better
    assert best_filter_verdict(Estimate(0.02, -0.03, 0.06))[0] == "inconclusive"  # a tie is not refuted
    assert best_filter_verdict(Estimate(0.066, 0.005, 0.128))[0] == "partly"  # better, by how much is open
    assert "rules out any positive effect" in best_filter_verdict(Estimate(-0.1, -0.15, -0.05))[2]


def test_transfer_measures_are_nan_without_adversarial_images():
    import numpy as np

    from helpers.attacks.adaptive import transfer_rates
    from helpers.studies.evaluate import filter_transfer
    from helpers.training.models import build_model

    model = build_model("small_cnn", input_shape=(8, 8, 1), num_classes=3)
    empty, no_labels = np.zeros((0, 8, 8, 1), np.float32), np.zeros(0, np.int64)
    rows = filter_transfer(model, empty, no_labels, empty, no_labels, ["none", "gaussian:1"])
    assert [r["defence"] for r in rows] == ["none", "gaussian:1"]
    assert all(np.isnan(r[k]) for r in rows for k in ("clean_accuracy", "still_target", "restored"))
    assert all(np.isnan(v) for v in transfer_rates(model, no_labels, empty, no_labels).values())


def test_c7_verdict_is_inconclusive_without_a_chosen_blur():
    from helpers.studies.verdicts import c7_verdict

    assert c7_verdict([], blur=None, statistic="robust share") == {"verdict": "inconclusive",
                                                                     "evidence": "chapter 5 chose no Gaussian filter",
                                                                     "proves": "nothing: no blur to compare"}
    assert c7_verdict([], blur="Gaussian σ = 1.5", statistic="robust share")["verdict"] in ("inconclusive", "confirmed", "partly",
                                                                                          "refuted")


def test_every_verdict_row_names_what_it_proves_and_its_family():
    from helpers.studies.verdicts import FAMILIES

    rows = verdict_rows({"C4": {"verdict": "refuted", "evidence": "e", "proves": "rules out x"}})
    assert [r["family"] for r in rows] == [FAMILIES[k] for k in CLAIMS]
    assert rows[3]["proves"] == "rules out x" and rows[0]["proves"] == ""
    assert "Holm" in FAMILIES["C6"] and "Bonferroni" in FAMILIES["C7"]


def test_a_verdict_that_changes_with_the_bootstrap_seed_is_not_kept():
    from helpers.studies.intervals import other_bootstrap_seed, with_stability

    kept = with_stability({"verdict": "partly", "evidence": "e", "proves": "p"}, ["partly"] * 20)
    assert kept["verdict"] == "partly" and kept["stability"] == "20/20" and "20 of 20 other bootstrap seeds" in kept["evidence"]
    shaky = with_stability({"verdict": "confirmed", "evidence": "e", "proves": "p"}, ["confirmed"] * 18 + ["partly"] * 2)
    assert shaky["verdict"] == "inconclusive" and shaky["stability"] == "18/20" and "would be confirmed" in shaky["proves"]
    assert len({other_bootstrap_seed(0, i) + k for i in range(20) for k in range(10)}) == 200  # streams never overlap


def test_monte_carlo_errors_shrink_with_the_number_of_resamples():
    from helpers.core.stats import p_value_mc_error, quantile_mc_error

    rng = np.random.default_rng(0)
    small, large = quantile_mc_error(rng.normal(size=1_000), 0.025), quantile_mc_error(rng.normal(size=100_000), 0.025)
    assert 0 < large < small / 5  # about 1/√100 = 1/10 of it
    assert abs(small - 0.075) < 0.05  # the normal's 2.5 % quantile from 1 000 draws: SE ≈ 0.07
    assert p_value_mc_error(0.06, 10_000) == pytest.approx(0.00237, abs=1e-4)
    assert np.isnan(quantile_mc_error(np.array([np.nan]), 0.5))


def test_c6_gains_report_their_monte_carlo_error_and_an_unstable_verdict_would_show():
    from helpers.studies.adaptive_study import paired_gains

    rng = np.random.default_rng(1)
    none = rng.random((3, 150)) < 0.3
    blur = rng.random((3, 150)) < 0.36
    gains = paired_gains({"none": none.astype(float), "g": blur.astype(float)}, reference="none", n_resamples=4000, seed=0)
    g = gains["g"]
    assert 0 < g.low_mc < 0.02 and 0 < g.high_mc < 0.02 and 0 < g.p_mc < 0.01
    assert "Monte-Carlo" in _c6(gains)["evidence"]
