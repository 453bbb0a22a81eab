"""Chapter 6's cascade: each attack only on the pairs every earlier one left correct, and what each added."""

from types import SimpleNamespace

import numpy as np
import pytest

from helpers.attacks import registry
from helpers.core.contract import RobustnessResult
from helpers.studies import cascade as cascade_module
from helpers.studies.cascade import Cascade, added_counts, cascade, cascade_flags


def _fake(name: str, gradient: str, breaks_label: int, seen: list):
    """A fixed-budget attack that breaks every digit of one label, at every budget, and records what it was given."""

    def run(model, images, labels, *, budgets, settings):
        seen.append((name, float(budgets[-1]), labels.tolist()))
        correct = np.repeat((labels != breaks_label)[None], len(budgets), axis=0)
        n = len(labels)
        return RobustnessResult(budgets=np.asarray(budgets), correct=correct, success=~correct,
                                adversarial=np.zeros((len(budgets), n, 1, 1, 1)), l2=np.zeros((len(budgets), n)),
                                gradient_norm=np.zeros(n))

    return registry.AttackSpec(name, name, "fixed_budget", gradient, run)


@pytest.fixture
def fake_attacks(monkeypatch):
    seen: list = []
    attacks = {spec.name: spec for spec in (_fake("A", "exact", 0, seen), _fake("B", "exact", 1, seen),
                                            _fake("S", "none", 2, seen))}
    monkeypatch.setattr(registry, "ATTACKS", attacks)
    monkeypatch.setattr(cascade_module, "ATTACKS", attacks)
    monkeypatch.setattr(cascade_module, "attacks_of", lambda kind: list(attacks.values()))
    return seen


def test_each_attack_sees_only_what_the_earlier_ones_left_and_the_worst_case_is_everyones(fake_attacks):
    labels = np.array([0, 1, 2, 3, 0, 1])
    images = np.zeros((6, 1, 1, 1), np.float32)
    after_pgd = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 0, 0]], bool)  # ε = 0, 1, 2
    found = cascade(SimpleNamespace(layers=[]), images, labels, budgets=[0.0, 1.0, 2.0], after_pgd=after_pgd, settings={})
    assert [s[0] for s in fake_attacks] == ["A", "A", "B", "B", "S", "S"]  # never at ε = 0
    assert fake_attacks[0] == ("A", 1.0, [0, 1, 2, 3]) and fake_attacks[1] == ("A", 2.0, [0, 2, 3])
    assert fake_attacks[2] == ("B", 1.0, [1, 2, 3])  # A broke the 0
    assert fake_attacks[4] == ("S", 1.0, [2, 3])
    assert found.broke["A"][1].tolist() == [True, False, False, False, False, False]
    assert found.worst.tolist() == [after_pgd[0].tolist(), [False, False, False, True, False, False],
                                    [False, False, False, True, False, False]]
    assert np.array_equal(found.after("B"), found.after_pgd & ~found.broke["A"] & ~found.broke["B"])
    assert found.gradient_free_breaks().sum() == 2 and found.last_gradient_attack() == "B"
    flags = cascade_flags({0: found, 3: found})
    assert list(flags) == ["PGD worst", "A", "B", "S", "gradient worst", "worst"] and list(flags["worst"]) == [0, 3]
    assert np.array_equal(flags["gradient worst"][3], found.after("B"))
    added = added_counts({0: found, 3: found})
    assert added["PGD worst"].tolist() == [0, 2, 4] and added["A"].tolist() == [0, 2, 2] and added["S"].tolist() == [0, 2, 2]


def test_a_cascade_checks_its_pgd_flags(fake_attacks):
    with pytest.raises(ValueError, match="after_pgd"):
        cascade(object(), np.zeros((3, 1, 1, 1)), np.zeros(3, int), budgets=[0.0, 1.0], after_pgd=np.ones((2, 4), bool), settings={})


def test_a_cascade_with_no_attack_left_is_pgds():
    after_pgd = np.array([[True, False]])
    found = Cascade(budgets=np.array([0.0]), after_pgd=after_pgd, broke={})
    assert np.array_equal(found.worst, after_pgd) and found.last_gradient_attack() is None


def test_bpda_attacks_run_only_where_the_filter_is_not_linear(monkeypatch):
    from helpers.training.models import build_model

    seen: list = []
    attacks = {spec.name: spec for spec in (_fake("A", "exact", 0, seen), _fake("P", "BPDA", 1, seen))}
    monkeypatch.setattr(registry, "ATTACKS", attacks)
    monkeypatch.setattr(cascade_module, "ATTACKS", attacks)
    monkeypatch.setattr(cascade_module, "attacks_of", lambda kind: list(attacks.values()))
    labels = np.array([0, 1, 2, 3])
    images = np.zeros((4, 8, 8, 1), np.float32)
    for defence, ran in (("median:3", ["A", "P"]), ("gaussian:1.5", ["A"]), ("none", ["A"])):
        model = build_model("small_cnn", input_shape=(8, 8, 1), num_classes=4, defence=defence)
        found = cascade(model, images, labels, budgets=[0.0, 1.0], after_pgd=np.ones((2, 4), bool), settings={})
        assert list(found.broke) == ran, defence


def test_doubled_effort_reruns_the_winning_variant_itself_with_twice_the_steps_and_starts(monkeypatch):
    seen: list = []

    def variant(name: str, breaks_label: int):
        def run(model, images, labels, *, budgets, settings):
            seen.append((name, dict(settings), labels.tolist()))
            correct = np.repeat((labels != breaks_label)[None], len(budgets), axis=0)
            n = len(labels)
            return RobustnessResult(budgets=np.asarray(budgets), correct=correct, success=~correct,
                                    adversarial=np.zeros((len(budgets), n, 1, 1, 1)), l2=np.zeros((len(budgets), n)),
                                    gradient_norm=np.zeros(n))

        return registry.AttackSpec(name, name, "fixed_budget", "exact", run, family="APGD")

    # The targeted variant broke the most pairs first, so it is the one run again, through its own function.
    attacks = {"CE": variant("CE", 9), "T": variant("T", 3)}
    monkeypatch.setattr(cascade_module, "ATTACKS", attacks)
    found = Cascade(budgets=np.array([0.0, 1.0]), after_pgd=np.ones((2, 4), bool),
                    broke={"CE": np.array([[0, 0, 0, 0], [1, 0, 0, 0]], bool), "T": np.array([[0, 0, 0, 0], [0, 1, 1, 0]], bool)})
    name, usual, again = cascade_module.doubled_effort(SimpleNamespace(layers=[]), found, np.zeros((4, 1, 1, 1), np.float32),
                                                       np.array([0, 1, 2, 3]), steps=50, restarts=1, seed=7)
    assert name == "T" and seen == [("T", {"steps": 100, "restarts": 2, "seed": 8}, [3])]  # only the pair left correct
    assert usual.tolist() == [1.0, 0.25] and again.tolist() == [1.0, 0.0]
