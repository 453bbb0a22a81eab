import numpy as np
import pytest

from helpers.core.io import read_csv, read_json, write_csv, write_json
from helpers.studies.evaluate import attack_evaluation, clean_accuracy, paper_score, predict_logits, random_targets


def test_random_targets_never_equal_the_label():
    labels = np.arange(1000) % 10
    targets = random_targets(labels, num_classes=10, seed=0)
    assert (targets != labels).all() and set(targets.tolist()) == set(range(10))
    np.testing.assert_array_equal(targets, random_targets(labels, num_classes=10, seed=0))


def test_attack_evaluation_attacks_correct_images_only(trained, mnist):
    summary = attack_evaluation(trained.model, mnist.x_test, mnist.y_test, n_images=60, seed=2, progress=False)
    predicted = predict_logits(trained.model, mnist.x_test[summary.indices]).argmax(1)
    np.testing.assert_array_equal(predicted, mnist.y_test[summary.indices])
    assert (summary.targets != mnist.y_test[summary.indices]).all()
    assert summary.n_attacked == 60 and summary.success_rate >= 0.99
    ok = summary.result.success
    assert summary.mean_l2 == pytest.approx(summary.result.l2[ok].mean())
    assert summary.median_l2 == pytest.approx(np.median(summary.result.l2[ok]))
    assert set(summary.row()) == {"n_attacked", "success_rate", "mean_l2", "median_l2", "mean_steps", "stalled"}
    accuracy = clean_accuracy(trained.model, mnist.x_test, mnist.y_test)
    assert paper_score(accuracy, summary.mean_l2) == pytest.approx(accuracy * summary.mean_l2)


def test_writes_are_atomic_and_round_trip(tmp_path):
    rows = [{"defence": "none", "accuracy": 0.96}, {"defence": "gaussian:1.5", "accuracy": 0.95, "extra": 1}]
    write_csv(rows, tmp_path / "r.csv")
    assert read_csv(tmp_path / "r.csv")[1] == {"defence": "gaussian:1.5", "accuracy": "0.95", "extra": "1"}
    write_json({"a": np.float32(1.5), "b": np.arange(3)}, tmp_path / "r.json")
    assert read_json(tmp_path / "r.json") == {"a": 1.5, "b": [0, 1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]


def test_failed_write_leaves_the_old_file(tmp_path):
    path = write_json({"ok": 1}, tmp_path / "r.json")
    with pytest.raises(TypeError):
        write_json({"bad": object()}, path)
    assert read_json(path) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
