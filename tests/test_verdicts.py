import numpy as np
import pytest

from helpers.verdicts import CLAIMS, adaptive_verdict, imperceptibility_verdict, sanity_checks, verdict_rows


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


def _defended(acc, diff, low, high):
    return tuple(np.asarray(a, dtype=float) for a in (acc, diff, low, high))


BUDGETS = [0.0, 1.0, 2.0, 4.0]
NONE = np.array([0.95, 0.6, 0.2, 0.0])


def test_adaptive_verdict_confirmed_partly_refuted_inconclusive():
    helps = _defended([0.94, 0.8, 0.5, 0.1], [-0.01, 0.2, 0.3, 0.1], [-0.03, 0.1, 0.2, 0.05], [0.01, 0.3, 0.4, 0.15])
    assert adaptive_verdict(BUDGETS, NONE, {"g": helps})["verdict"] == "confirmed"
    some = _defended([0.94, 0.7, 0.2, 0.0], [-0.01, 0.1, 0.0, 0.0], [-0.03, 0.02, -0.1, 0.0], [0.01, 0.2, 0.1, 0.0])
    assert adaptive_verdict(BUDGETS, NONE, {"g": some})["verdict"] == "partly"
    hurts = _defended([0.9, 0.4, 0.1, 0.0], [-0.05, -0.2, -0.1, 0.0], [-0.08, -0.3, -0.2, 0.0], [-0.02, -0.1, 0.01, 0.0])
    assert adaptive_verdict(BUDGETS, NONE, {"g": hurts})["verdict"] == "refuted"
    tiny = _defended([0.95, 0.6, 0.2, 0.0], [0.0, 0.0, 0.01, 0.0], [-0.02, -0.03, -0.02, 0.0], [0.02, 0.03, 0.04, 0.0])
    assert adaptive_verdict(BUDGETS, NONE, {"g": tiny})["verdict"] == "refuted"
    wide = _defended([0.95, 0.6, 0.2, 0.0], [0.0, 0.0, 0.05, 0.0], [-0.2, -0.2, -0.1, 0.0], [0.2, 0.2, 0.2, 0.0])
    result = adaptive_verdict(BUDGETS, NONE, {"g": wide, "m": hurts})
    assert result["verdict"] == "refuted"  # m hurts and g never helps
    assert adaptive_verdict(BUDGETS, NONE, {"g": wide})["verdict"] == "inconclusive"
    # The most favourable model decides, and the evidence names it and every compared budget (not ε = 4: both at 0).
    result = adaptive_verdict(BUDGETS, NONE, {"m": hurts, "g": some})
    assert result["verdict"] == "partly" and "most favourable: g" in result["evidence"] and "ε=4" not in result["evidence"]
    assert adaptive_verdict(BUDGETS, NONE, {})["verdict"] == "inconclusive"


def _checks(**changes):
    args = {
        "budgets": BUDGETS,
        "curves": {"none/exact": NONE, "g/exact": np.array([0.94, 0.7, 0.3, 0.02]), "g/BPDA": np.array([0.94, 0.8, 0.4, 0.05])},
        "worst": {"none": NONE, "g": np.array([0.94, 0.7, 0.3, 0.02])},
        "clean": {"none": 0.95, "g": 0.94},
        "noise": {"none": np.array([0.95, 0.95, 0.9, 0.8]), "g": np.array([0.94, 0.94, 0.94, 0.9])},
        "zero_gradients": {"none/exact": 0, "g/exact": 0},
        "more_steps": ("g/exact", np.array([0.94, 0.7, 0.3, 0.02]), np.array([0.94, 0.69, 0.3, 0.0])),
        "n_images": 100,
    } | changes
    return {row["check"].split(" (")[0]: row["passed"] for row in sanity_checks(**args)}


def test_sanity_checks_pass_on_a_sound_evaluation():
    results = _checks()
    assert len(results) == 5 and all(results.values())


@pytest.mark.parametrize(
    "changes, failing",
    [
        ({"more_steps": ("g/exact", np.array([0.9, 0.5, 0.3, 0.0]), np.array([0.9, 0.6, 0.3, 0.0]))}, "more steps"),
        ({"curves": {"x": np.array([0.9, 0.5, 0.6, 0.0])}}, "larger budget"),
        ({"worst": {"none": NONE, "g": np.array([0.94, 0.7, 0.3, 0.2])}}, "largest budget"),
        ({"zero_gradients": {"g/exact": 3}}, "zero gradient"),
        ({"noise": {"none": np.array([0.95, 0.5, 0.2, 0.0]), "g": np.array([0.94, 0.94, 0.94, 0.9])}}, "random noise"),
    ],
)
def test_each_sanity_check_can_fail(changes, failing):
    results = _checks(**changes)
    assert [name for name, ok in results.items() if not ok] == [next(n for n in results if failing in n)]


def test_one_image_of_slack_only():
    key = "a larger budget never raises accuracy"
    assert _checks(curves={"x": np.array([0.9, 0.5, 0.51, 0.0])}, n_images=100)[key]
    assert not _checks(curves={"x": np.array([0.9, 0.5, 0.52, 0.0])}, n_images=100)[key]


def test_verdict_rows_cover_every_claim_in_order():
    rows = verdict_rows({"C3": {"verdict": "refuted", "evidence": "x"}})
    assert [r["claim"].split(":")[0] for r in rows] == list(CLAIMS)
    assert set(rows[0]) == {"claim", "verdict", "evidence"}
    assert rows[2]["verdict"] == "refuted" and rows[0]["verdict"] == "inconclusive"
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
        (_rms(0.030), _rms(0.0301), 0.9, "inconclusive"),  # intervals overlap
        (_rms(0.05), _rms(0.02), 0.5, "inconclusive"),  # models too weak to compare
    ],
)
def test_architecture_rule(vgg, inc, accuracy, verdict):
    from helpers.verdicts import architecture_verdict

    result = architecture_verdict({"vgg16": accuracy, "inception_v3": accuracy}, {"vgg16": vgg, "inception_v3": inc})
    assert result["verdict"] == verdict
    assert ("too weak" in result["evidence"]) == (accuracy < 0.6)


def test_architecture_rule_needs_both_models():
    from helpers.verdicts import architecture_verdict

    assert architecture_verdict({"vgg16": 0.9}, {"vgg16": _rms(0.05)})["verdict"] == "inconclusive"


# --- C3–C5: chapter 5's score table ----------------------------------------------------------------------------

def _score_row(defence, accuracy, l2, *, lo=None, hi=None, std=0.005):
    from helpers.filters import Defence

    d = Defence.parse(defence)
    lo, hi = (l2 - 0.1 if lo is None else lo), (l2 + 0.1 if hi is None else hi)
    return {"defence": str(d), "label": d.label, "kind": d.kind, "clean_accuracy": accuracy, "accuracy_std": std,
            "mean_l2": l2, "mean_l2_lo": lo, "mean_l2_hi": hi, "score": accuracy * l2, "score_lo": accuracy * lo,
            "score_hi": accuracy * hi}


@pytest.mark.parametrize(
    "gauss_accuracy, gauss_l2, verdict",
    [(0.975, 3.0, "confirmed"), (0.975, 2.05, "partly"), (0.90, 3.0, "partly"), (0.90, 2.05, "refuted")],
)
def test_gaussian_accuracy_and_size_rule(gauss_accuracy, gauss_l2, verdict):
    from helpers.verdicts import gaussian_accuracy_and_size_verdict

    rows = [_score_row("none", 0.98, 2.0), _score_row("gaussian:1.5", gauss_accuracy, gauss_l2)]
    assert gaussian_accuracy_and_size_verdict(rows)["verdict"] == verdict
    assert gaussian_accuracy_and_size_verdict(rows[:1])["verdict"] == "inconclusive"


@pytest.mark.parametrize("gauss, median, verdict", [(0.97, 0.94, "confirmed"), (0.94, 0.97, "refuted"), (0.95, 0.945, "inconclusive")])
def test_gaussian_beats_median_rule(gauss, median, verdict):
    from helpers.verdicts import gaussian_beats_median_verdict

    rows = [_score_row("none", 0.98, 2.0), _score_row("gaussian:1", gauss, 2.0), _score_row("median:3", median, 2.0)]
    assert gaussian_beats_median_verdict(rows)["verdict"] == verdict
    assert gaussian_beats_median_verdict(rows[:2])["verdict"] == "inconclusive"


def test_paper_choice_rule():
    from helpers.verdicts import best_by_kind, paper_choice_verdict

    base = [_score_row("none", 0.98, 2.0), _score_row("median:3", 0.97, 2.2)]
    wins = base + [_score_row("gaussian:1.5", 0.98, 3.0), _score_row("gaussian:3", 0.9, 2.5)]
    assert paper_choice_verdict(wins)["verdict"] == "confirmed"
    close = base + [_score_row("gaussian:1.5", 0.98, 2.9), _score_row("gaussian:3", 0.98, 3.0)]
    assert paper_choice_verdict(close)["verdict"] == "partly"  # intervals overlap
    far = base + [_score_row("gaussian:1.5", 0.98, 2.0, lo=1.9, hi=2.1), _score_row("gaussian:3", 0.98, 4.0, lo=3.9, hi=4.1)]
    assert paper_choice_verdict(far)["verdict"] == "refuted"
    assert paper_choice_verdict(base)["verdict"] == "inconclusive"
    assert best_by_kind(far) == {"best_defence": "gaussian:3", "best_gaussian": "gaussian:3", "best_median": "median:3"}


def test_score_rules_are_inconclusive_when_no_attack_succeeded():
    from helpers.verdicts import NO_SUCCESS, best_by_kind, gaussian_accuracy_and_size_verdict, paper_choice_verdict

    nan = float("nan")
    rows = [_score_row(spec, 0.4, nan, lo=nan, hi=nan) for spec in ("none", "gaussian:1.5", "median:3")]
    assert gaussian_accuracy_and_size_verdict(rows) == {"verdict": "inconclusive", "evidence": NO_SUCCESS}
    assert paper_choice_verdict(rows) == {"verdict": "inconclusive", "evidence": NO_SUCCESS}
    assert best_by_kind(rows) == {"best_defence": None, "best_gaussian": None, "best_median": None}


def test_transfer_measures_are_nan_without_adversarial_images():
    import numpy as np

    from helpers.adaptive import transfer_rates
    from helpers.evaluate import filter_transfer
    from helpers.models import build_model

    model = build_model("small_cnn", input_shape=(8, 8, 1), num_classes=3)
    empty, no_labels = np.zeros((0, 8, 8, 1), np.float32), np.zeros(0, np.int64)
    rows = filter_transfer(model, empty, no_labels, empty, no_labels, ["none", "gaussian:1"])
    assert [r["defence"] for r in rows] == ["none", "gaussian:1"]
    assert all(np.isnan(r[k]) for r in rows for k in ("clean_accuracy", "still_target", "restored"))
    assert all(np.isnan(v) for v in transfer_rates(model, no_labels, empty, no_labels).values())
