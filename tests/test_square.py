"""The Square attack (L2): its contract on a trained model, its proposals, its query budget."""

import keras
import numpy as np
import pytest

from helpers.attacks.square import _bump, _initial_delta, _propose, _rescale, _search, _side, square_l2
from helpers.studies.evaluate import predict_logits
from helpers.training.models import build_model

BUDGETS = [0.0, 1.0, 2.0, 4.0]
N_IMAGES = 40
N_QUERIES = 300


@pytest.fixture(scope="module")
def sample(first_test_digits):
    images, labels = first_test_digits
    return images[:N_IMAGES], labels[:N_IMAGES]


@pytest.fixture(scope="module")
def ours(trained, sample):
    return square_l2(trained.model, *sample, budgets=BUDGETS, n_queries=N_QUERIES)


@pytest.fixture(scope="module")
def untrained():
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", input_shape=(8, 8, 1), num_classes=10)
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    return model, x, predict_logits(model, x).argmax(axis=1)


# ---- On a trained model (the promises every attack keeps are tests/test_attack_contract.py) ---------------


def test_reads_no_gradient(ours):
    assert np.isnan(ours.gradient_norm).all()


def test_lowers_accuracy_on_an_undefended_model(ours):
    # 300 queries break about half of the digits at ε = 2 and nearly all at ε = 4 (APGD: 0 %); demand a clear drop.
    assert ours.accuracy[2] <= ours.accuracy[0] - 0.2
    assert ours.accuracy[3] <= 0.2


def test_the_seed_matters(untrained):
    model, x, labels = untrained
    first = square_l2(model, x, labels, budgets=[0.5], n_queries=20, seed=3)
    other = square_l2(model, x, labels, budgets=[0.5], n_queries=20, seed=4)
    assert not np.array_equal(first.adversarial, other.adversarial)


# ---- The random search, on a model we can count --------------------------------------------------------------


def _linear_score(weights):
    """A 3-class linear "model" in NumPy: (margin of label y, label kept), as the search's ``score``."""

    def score(points, y):
        logits = points.reshape(len(points), -1) @ weights
        other = np.where(np.arange(3) == y[:, None], -np.inf, logits).max(axis=1)
        return logits[np.arange(len(y)), y] - other, logits.argmax(axis=1) == y

    return score


def test_query_budget_is_respected_and_success_stops_the_search():
    rng = np.random.default_rng(0)
    x = (rng.random((6, 10, 10, 1)) * 0.5 + 0.25).astype(np.float32)
    weights = rng.standard_normal((100, 3)) * 0.3
    labels = (x.reshape(len(x), -1) @ weights).argmax(axis=1)  # every clean image correct
    score, counted = _linear_score(weights), []

    def counting(points, y):
        counted.append(len(points))
        return score(points, y)

    best, wrong = _search(counting, x, labels, np.full(len(x), 3.0, np.float32), n_queries=15, p_init=0.1,
                          rng=np.random.default_rng(1))
    assert len(counted) <= 15 and counted[0] == len(x)  # the start, then one call per query for the live rows
    assert all(a >= b for a, b in zip(counted, counted[1:], strict=False))  # broken rows leave the search
    assert wrong.any() and not wrong.all()  # so the test sees both kinds of rows
    np.testing.assert_array_equal(wrong, ~score(best, labels)[1])


def test_proposals_keep_the_norm_and_the_range():
    rng = np.random.default_rng(0)
    x = rng.random((5, 12, 12, 3)).astype(np.float32)
    eps = np.array([0.1, 0.5, 1.0, 2.0, 4.0], np.float32)
    best = np.clip(x + _rescale(_initial_delta(x.shape, rng), eps), 0.0, 1.0)
    for _ in range(3):
        best = _propose(x, best, eps, 5, rng)
        norms = np.sqrt(((best.astype(np.float64) - x) ** 2).reshape(5, -1).sum(axis=1))
        assert best.min() >= 0.0 and best.max() <= 1.0
        assert (norms <= eps * (1 + 1e-5)).all()  # rescaled to ε in float32, then clipping only shortens δ


def test_the_window_shape_and_size_schedule():
    bump = _bump(7)
    np.testing.assert_allclose((bump.astype(np.float64) ** 2).sum(), 1.0, rtol=1e-6)  # float32 of a unit vector
    assert (bump[:3] > 0).all() and (bump[3:] < 0).all()  # upper half positive, lower half negative
    assert bump[1, 3] == bump[:3].max()  # each half peaks at its centre
    sides = [_side(0.1, q, 1000, (28, 28), 1) for q in range(1, 1000)]
    assert sides[0] == 9 and all(s % 2 == 1 and 3 <= s <= 28 for s in sides)
    assert all(a >= b for a, b in zip(sides, sides[1:], strict=False))  # windows only shrink
    assert _side(1.0, 1, 1000, (8, 8), 1) == 7  # the whole image, made odd


@pytest.mark.parametrize(
    "kwargs, error, param",
    [
        ({"budgets": []}, TypeError, "budgets"),
        ({"budgets": [1.0], "n_queries": 0}, ValueError, "n_queries"),
        ({"budgets": [1.0], "p_init": 0.0}, ValueError, "p_init"),
        ({"budgets": [1.0], "p_init": 1.5}, ValueError, "p_init"),
        ({"budgets": [1.0], "seed": -1}, ValueError, "seed"),
        ({"budgets": [1.0], "batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_arguments_fail_fast_naming_the_parameter(untrained, kwargs, error, param):
    model, x, labels = untrained
    with pytest.raises(error, match=param) as info:
        square_l2(model, x, labels, **kwargs)
    assert "\n" not in str(info.value)
