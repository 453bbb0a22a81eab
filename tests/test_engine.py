"""Compiled functions shared by models of one architecture: traced once, the same numbers bit for bit."""

import keras
import numpy as np
import pytest

from helpers.attacks.adaptive import bpda_model, pgd_l2
from helpers.attacks.attack import targeted_attack
from helpers.attacks.minnorm import ddn_l2
from helpers.core import engine
from helpers.training.models import build_model

SHAPE = (12, 12, 1)


def _model(defence: str, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_model("small_cnn", input_shape=SHAPE, num_classes=10, defence=defence)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.random((6, *SHAPE), dtype=np.float32), rng.integers(0, 10, 6), rng.integers(0, 10, 6)


def test_copies_of_one_architecture_share_a_template_whatever_their_names_and_weights():
    a, b = _model("gaussian:1", 0), _model("gaussian:1", 1)
    assert [layer.name for layer in a.layers] != [layer.name for layer in b.layers]  # Keras numbers every copy
    assert engine.architecture_key(a) == engine.architecture_key(b)
    assert engine.shared_template(a) is engine.shared_template(b) is not None
    assert engine.architecture_key(_model("gaussian:2", 0)) != engine.architecture_key(a)  # another σ, another function
    assert engine.architecture_key(_model("median:3", 0)) != engine.architecture_key(a)
    assert engine.architecture_key(bpda_model(a)) == engine.architecture_key(bpda_model(b)) != engine.architecture_key(a)


def test_a_large_model_and_share_false_get_functions_of_their_own(monkeypatch):
    model = _model("none", 0)
    monkeypatch.setattr(engine, "SHARED_MAX_PARAMS", model.count_params() - 1)
    assert engine.shared_template(model) is None
    built = []
    first = engine.compiled(model, "test key", lambda m: built.append(m) or object())
    assert built == [model] and engine.compiled(model, "test key", lambda m: None) is first


@pytest.mark.slow
def test_shared_functions_give_the_numbers_of_per_model_functions_bit_for_bit(batch, monkeypatch):
    images, labels, targets = batch
    models = [_model("median:3", seed) for seed in (0, 1, 2)]

    def attacks(model):
        paper = targeted_attack(model, images, targets, max_steps=20, progress=False)
        return [paper.adversarial, paper.steps, ddn_l2(model, images, labels, targets=targets, steps=10).adversarial,
                pgd_l2(bpda_model(model), images, labels, budgets=[0.5, 1.0], steps=5).adversarial]

    shared = [attacks(m) for m in models + models[:1]]  # back to the first: its weights are copied in again
    monkeypatch.setattr(engine, "SHARED_MAX_PARAMS", 0)
    alone = [attacks(m) for m in models + models[:1]]
    for mine, theirs in zip(shared, alone, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(shared[0][2], shared[1][2])  # different weights, different attacks


def test_one_trace_for_many_models_and_the_current_weights_of_each(batch):
    images, labels, targets = batch
    first, second = _model("gaussian:1.5", 3), _model("gaussian:1.5", 4)
    ddn_l2(first, images, labels, targets=targets, steps=3)
    before = ddn_l2(second, images, labels, targets=targets, steps=3).adversarial
    run = engine.compiled(second, ("ddn", True, "cross_entropy"), lambda m: None).__wrapped__
    assert run.experimental_get_tracing_count() == 1
    # Weights that change between calls (as in training) are read at every call.
    second.layers[-1].kernel.assign(second.layers[-1].kernel * 0.5)
    after = ddn_l2(second, images, labels, targets=targets, steps=3).adversarial
    assert not np.array_equal(before, after)
    assert run.experimental_get_tracing_count() == 1
    # The weights go in through one compiled copy, traced once for the architecture.
    assert engine._loader(engine.shared_template(second)).experimental_get_tracing_count() == 1


def test_the_forward_pass_is_each_models_own(batch):
    images, _, _ = batch
    a, b = _model("gaussian:1.5", 5), _model("gaussian:1.5", 6)
    fa, fb = engine.forward_function(a), engine.forward_function(b)
    assert a.__dict__[engine._ATTRIBUTE]["forward"] is fa is engine.forward_function(a) and fa is not fb
    np.testing.assert_array_equal(fb(images).numpy(), b(images, training=False).numpy())


def test_forgetting_a_models_compiled_functions_builds_them_again(monkeypatch):
    model = _model("none", 3)
    built = []
    first = engine.compiled(model, "forget key", lambda m: built.append(m) or object()).__wrapped__
    assert engine.compiled(model, "forget key", lambda m: None).__wrapped__ is first  # shared through the template
    engine.forget_compiled(model)
    again = engine.compiled(model, "forget key", lambda m: built.append(m) or object()).__wrapped__
    assert again is not first and len(built) == 2
    monkeypatch.setattr(engine, "SHARED_MAX_PARAMS", 0)  # a model with functions of its own forgets them too
    own = engine.compiled(model, "forget key", lambda m: object())
    engine.forget_compiled(model)
    assert engine.compiled(model, "forget key", lambda m: object()) is not own


def _loop_bodies_and_gradients(function) -> tuple[list, list]:
    """The graphs a compiled function's while-loops run (bodies and the branches inside them, not descending into
    functions marked ``_noinline``), and the ``_noinline`` functions those call."""
    graph = function.get_concrete_function().graph.as_graph_def()
    library = {f.signature.name: f for f in graph.library.function}

    def called(nodes):
        return [library[a.func.name] for node in nodes for a in node.attr.values() if a.func.name in library]

    inside, calls, todo = [], [], [library[node.attr["body"].func.name] for node in graph.node if node.op == "While"]
    while todo:
        f = todo.pop()
        if f.attr["_noinline"].b:
            calls.append(f)
        elif f not in inside:
            inside.append(f)
            todo.extend(called(f.node_def))
    return inside, calls


@pytest.mark.parametrize("attack", ["paper", "ddn", "apgd", "pgd", "margin", "smoothed pgd"])
def test_attack_loops_call_their_models_gradient_as_a_function_of_its_own(attack):
    # Inlined into a loop, max-pooling's gradient is left on TensorFlow's slow kernel in some traces (loop_body).
    from helpers.attacks import adaptive, apgd, minnorm
    from helpers.attacks import attack as paper
    from helpers.studies import adaptive_study, alternatives

    model = _model("none", 0)
    build = {"paper": lambda: paper._build_chunk(model, "cross_entropy"),
             "ddn": lambda: minnorm._build_ddn(model, targeted=True, loss="cross_entropy"),
             "apgd": lambda: apgd._build_apgd(model, "cross_entropy"), "pgd": lambda: adaptive._build_pgd(model, True),
             "margin": lambda: adaptive_study._build_margin_attack(model),
             "smoothed pgd": lambda: alternatives._build_smoothed_pgd(model, 2)}[attack]
    bodies, gradients = _loop_bodies_and_gradients(build())
    assert bodies and gradients
    assert not any(node.op == "MaxPoolGrad" for body in bodies for node in body.node_def)
    assert any(node.op == "MaxPoolGrad" for f in gradients for node in f.node_def)
