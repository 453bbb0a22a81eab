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
