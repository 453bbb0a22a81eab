"""The stronger attacks against their library peers (chapter 08): only an attack as strong counts, a miss is explained."""

import numpy as np
import pytest

from helpers.bench import peers
from helpers.bench.reference_attacks import library_versions
from helpers.bench.timing import SHORT_ROUNDS

VERSIONS = library_versions()
N_IMAGES = 8


@pytest.fixture(scope="module")
def workload(trained, correct_subset):
    images, labels, targets = correct_subset
    return trained.model, images[:N_IMAGES], labels[:N_IMAGES], targets[:N_IMAGES]


@pytest.mark.skipif(VERSIONS["foolbox"] is None, reason="Foolbox is not installed (requirements-bench.txt)")
def test_ddn_matches_foolbox_in_quality_and_is_timed(workload):
    model, images, labels, targets = workload
    run = peers.ddn_against_foolbox(model, images, labels, targets, steps=30, version=VERSIONS["foolbox"], repeats=2)
    assert run.status == "ok" and run.n == N_IMAGES and run.image_steps == N_IMAGES * 30
    # Same algorithm, settings, images and targets: the medians agree to float rounding along the paths.
    assert run.as_strong and run.ours[0] == pytest.approx(run.theirs[0], rel=peers.MEDIAN_TOLERANCE)
    assert np.isfinite(run.ours[0]) and run.ours[0] > 0
    # Two paired rounds: Foolbox once, ours SHORT_ROUNDS times and the ceiling once in each; one ratio per run of ours.
    assert len(run.theirs_seconds) == len(run.ceiling_seconds) == 2 and len(run.ours_seconds) == 2 * SHORT_ROUNDS
    assert len(run.round_ratios()) == 2 * SHORT_ROUNDS and run.ratio > 0
    # Ours stops converged images early, so it makes at most Foolbox's 31 passes per image. On 8 images and 30 steps
    # none may have converged (seen on an AVX2-only AMD EPYC); the chapter's 96 images and 100 steps take about half.
    assert N_IMAGES * peers.DDN_STOP_PATIENCE <= run.passes <= N_IMAGES * 31 and 0.0 <= run.worse_share <= 1.0
    assert "forward and backward passes" in peers.PeerComparison({"ddn": run}).glued()["ddn_peer_stopping"]


@pytest.mark.skipif(VERSIONS["art"] is None, reason="ART is not installed (requirements-bench.txt)")
def test_apgd_against_art_judges_every_budget(workload):
    model, images, labels, _ = workload
    run = peers.apgd_against_art(model, images, labels, budgets=[1.0, 3.0], steps=10, restarts=1, version=VERSIONS["art"],
                                 repeats=1)
    assert run.status == "ok" and len(run.ours) == len(run.theirs) == 2
    assert all(0.0 <= a <= 1.0 for a in run.ours + run.theirs)
    assert run.ours[1] <= run.ours[0]  # a larger budget never leaves more digits correct
    assert run.as_strong == bool(np.all(np.array(run.ours) <= np.array(run.theirs) + peers.ACCURACY_TOLERANCE + 1e-9))


@pytest.mark.skipif(VERSIONS["foolbox"] is None or VERSIONS["art"] is None, reason="Foolbox or ART is not installed")
def test_ours_is_never_timed_in_the_librarys_wake(workload, monkeypatch):
    """For seconds after an eager library run the same compiled calls ran slower: ours is timed before ART's run,
    and after Foolbox's only behind an untimed run of its own."""
    model, images, labels, targets = workload
    order = []
    timed_call, interleaved_times = peers.timed_call, peers.interleaved_times
    monkeypatch.setattr(peers, "timed_call", lambda fn: order.append("timed") or timed_call(fn))
    monkeypatch.setattr(peers, "interleaved_times",
                        lambda c, **k: order.append(f"ours, warm-up {k.get('warmup', 1)}") or interleaved_times(c, **k))
    peers.ddn_against_foolbox(model, images, labels, targets, steps=5, version=VERSIONS["foolbox"], repeats=2)
    # Each round: Foolbox's run, ours behind one untimed run, then the ceiling.
    assert order == ["timed", "ours, warm-up 1", "timed"] * 2
    order.clear()
    peers.apgd_against_art(model, images, labels, budgets=[1.0], steps=5, restarts=1, version=VERSIONS["art"], repeats=1)
    assert order == ["ours, warm-up 1", "timed"]


def test_paired_rounds_set_each_library_run_against_ours_in_the_same_round():
    run = _run(same=True, theirs_s=7.0)
    run.theirs_seconds, run.ours_seconds = [6.0, 9.0], [1.0, 2.0, 1.2, 1.5, 1.4, 3.0]
    # Each of ours against the library's run of its own round: 6, 3, 5 and 6, 4.5, 3.
    assert run.round_ratios() == [6.0 / 1.0, 6.0 / 2.0, 6.0 / 1.2, 9.0 / 1.5, 9.0 / 1.4, 9.0 / 3.0]
    assert run.ratio == pytest.approx((5.0 + 6.0) / 2)  # the median of 3, 3, 4.5, 5, 6, 6.43
    run.ours_seconds = [1.0] * 5
    with pytest.raises(ValueError, match="ours_seconds"):
        run.round_ratios()


def test_a_missing_library_runs_nothing(workload):
    model, images, labels, targets = workload
    run = peers.ddn_against_foolbox(model, images, labels, targets, steps=5, version=None, repeats=1)
    assert run.status == "not installed" and run.ratio is None and run.ours_seconds == []
    comparison = peers.PeerComparison({"ddn": run})
    assert comparison.goal_rows() == [("DDN vs Foolbox, median ‖δ‖₂ as small (×)", None, None, "")]
    assert comparison.table().data["ours"].tolist() == ["not installed"]
    assert comparison.glued()["peer_runs"] == f"{run.peer}: not installed."
    assert peers.PeerComparison({"ddn": _run(same=True, theirs_s=7.0)}).glued()["peer_runs"] == "Both library runs completed."


def test_a_library_that_breaks_is_reported(workload, monkeypatch):
    model, images, labels, _ = workload

    def broken(build):
        raise RuntimeError("no such attack\nsecond line")

    monkeypatch.setattr(peers, "_quiet_import_and_build", broken)
    run = peers.apgd_against_art(model, images, labels, budgets=[1.0], steps=5, restarts=1, version="9.9", repeats=1)
    assert run.status == "failed: RuntimeError: no such attack" and run.ratio is None


def _run(*, same: bool, theirs_s: float, quality: str = "median ‖δ‖₂") -> peers.PeerRun:
    return peers.PeerRun("ours", "theirs", "ok", quality, [1.0 if same else 1.5], [1.0], same, [1.0, 1.0], [theirs_s],
                         n=100, image_steps=10_000)


def test_goal_counts_only_when_ours_is_as_strong():
    fast_but_weaker = peers.PeerComparison({"ddn": _run(same=False, theirs_s=20.0)})
    (_, rounds, as_strong, note), = fast_but_weaker.goal_rows()
    assert rounds == [20.0, 20.0] and as_strong is False and note == "ours is weaker: ours 1.5000, theirs 1.0000"
    equal_and_fast = peers.PeerComparison({"ddn": _run(same=True, theirs_s=7.0)})
    assert equal_and_fast.goal_rows()[0][2] is True


def test_a_miss_is_explained_by_the_models_own_rate():
    run = _run(same=True, theirs_s=3.0)
    run.ceiling_seconds = [0.5, 0.5]
    (_, rounds, as_strong, note), = peers.PeerComparison({"ddn": run}).goal_rows()
    # Ours 1 s; the full budget's 10 000 forward+backward passes alone 0.5 s; the library's 3 s is 6× the passes alone.
    assert rounds == [3.0, 3.0] and as_strong is True
    assert note.startswith("ours took 1.00 s; the full budget's 10000 forward+backward passes alone took 0.50 s")
    assert "6.0× faster than the library" in note and "passes, ours made" not in note  # passes unknown: no bound
    # With the passes ours made: a sixth of the library's 3 s is 0.5 s, time for the 10 000 passes at 0.05 ms each.
    run.passes = 5000
    note = peers.PeerComparison({"ddn": run}).goal_rows()[0][3]
    assert note.endswith("; 6× its speed leaves time for 10000 such passes, ours made 5000")


def test_the_stopping_sentence_gives_the_passes_saved_and_the_images_that_paid_for_it():
    run = _run(same=True, theirs_s=7.0)
    run.passes, run.worse_share = 5_050, 0.19
    sentence = peers.PeerComparison({"ddn": run}).glued()["ddn_peer_stopping"]
    # 100 images × 100 steps, each image judged once more at the end: 10 100 passes for the full budget.
    assert "5,050 forward and backward passes, 50 % of the 10,100" in sentence and "on 19 % of the images" in sentence
    assert peers.PeerComparison({"ddn": _run(same=True, theirs_s=7.0)}).glued()["ddn_peer_stopping"] == ""


def test_bad_arguments_name_the_parameter(workload):
    model, images, labels, targets = workload
    with pytest.raises(ValueError, match="n_images"):
        peers.peer_comparison(model, images, labels, targets, {"art": None, "foolbox": None}, n_images=0, minnorm_steps=5,
                              budgets=[1.0], steps=5, restarts=1, repeats=1)
    with pytest.raises(ValueError, match="targets"):
        peers.ddn_against_foolbox(model, images, labels, targets[:3], steps=5, version=None, repeats=1)
    with pytest.raises(ValueError, match="steps"):
        peers.ddn_against_foolbox(model, images, labels, targets, steps=0, version=None, repeats=1)
