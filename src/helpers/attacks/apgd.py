"""Auto-PGD in the L2 ball (APGD): fixed-budget PGD without a step size to tune, with random restarts.

Method: Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (https://arxiv.org/abs/2003.01690), algorithm 1, as in their reference code
(``autoattack/autopgd_base.py``) and ART's ``AutoProjectedGradientDescent``:

* start at a random point of the sphere ‖δ‖₂ = ε (clipped to [0, 1]), one independent start per restart;
* step η along the L2-normalised gradient, project onto the ball and [0, 1], then mix with the previous move
  (momentum: x ← P(x + 0.75·(z − x) + 0.25·(x − x_prev)); the first step has no momentum); η starts at 2ε;
* at the checkpoints w_j = ⌈p_j·steps⌉ (p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06))
  η is halved and the iterate restarts from the best point so far when fewer than 75 % of the steps since the
  last checkpoint raised the loss, or when η was not halved at the last checkpoint and the best loss has not
  risen since;
* losses: the cross-entropy, or the untargeted DLR margin −(z_y − max_{i≠y} z_i)/(z_π1 − z_π3 + 10⁻¹²), which
  is invariant to shifting and scaling the logits (π sorts them in decreasing order), or the targeted DLR margin
  −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2 + 10⁻¹²) towards a target class t (z_π1 − z_π3 below with 3 classes);
* APGD-T (:func:`apgd_targeted_l2`): the targeted DLR loss towards each of the classes the clean image ranks
  highest after its own label, one run per target on the pairs every earlier target left correct; it counts as
  broken when the label changes, whichever class it changes to (AutoAttack's ``apgd-t``).

Engine: rows are (restart, budget, image) triples in one compiled ``tf.function`` per model and loss
(:func:`helpers.core.engine.compiled`); Python only cuts the rows into batches, keeping the restarts of one
(budget, image) pair together so that all of them stop as soon as one has changed the label.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from helpers.core.contract import RobustnessResult, l2_distances, l2_norms, normalise, project_l2
from helpers.core.engine import check_budgets, check_classifier, check_model_images, compiled, loop_body, predict_logits
from helpers.core.first_conv import attack_logits
from helpers.core.validate import check_choice, check_int, check_labels

LOSSES = ("cross_entropy", "dlr", "dlr_targeted")
MOMENTUM = 0.75  # weight of the new projected step; 1 − MOMENTUM goes to the previous move
RHO = 0.75  # share of loss-raising steps below which η is halved at a checkpoint


def apgd_l2(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    budgets,
    steps: int = 100,
    restarts: int = 5,
    loss: str = "cross_entropy",
    targets: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int = 1000,
) -> RobustnessResult:
    """APGD-L2 with ``restarts`` random starts, for every budget ε of ``budgets``.

    An image counts as *correct* at budget ε only if the clean image and every point visited by every restart
    keep its label (the worst case over restarts), so ε = 0 gives the clean accuracy.

    Args:
        model: Keras model returning logits for [0, 1] images; its gradient is the attacker's (wrap a defended
            model in :func:`helpers.attacks.adaptive.bpda_model` for BPDA).
        images: (N, H, W, C) floats in [0, 1].
        labels: N true classes.
        budgets: non-negative L2 budgets ε in [0, 1] pixel units.
        steps: gradient steps per restart (the paper's 100 by default).
        restarts: independent random starts per (budget, image).
        loss: ``"cross_entropy"``, ``"dlr"`` or ``"dlr_targeted"`` (needs ``targets``); both DLR losses need at
            least 3 classes.
        targets: N target classes, other than the labels, for ``"dlr_targeted"`` (and only for it).
        seed: seed of the random starts; restart r draws the same start whatever ``restarts`` is.
        batch_size: rows (restart × budget × image) per compiled call, rounded down to whole restart groups.

    Returns:
        :class:`helpers.core.contract.RobustnessResult`; ``adversarial`` is the first misclassified point of the
        first restart that found one, else the highest-loss point of all restarts.

    >>> result = apgd_l2(model, x[:100], y[:100], budgets=[0, 1, 2], loss="dlr")  # doctest: +SKIP
    >>> result.accuracy  # doctest: +SKIP
    """
    num_classes = check_classifier(model)
    budgets = check_budgets(budgets)
    steps = check_int("steps", steps, minimum=1)
    restarts = check_int("restarts", restarts, minimum=1)
    loss = check_choice("loss", loss, LOSSES)
    if loss == "dlr" and num_classes < 3:
        raise ValueError(f"loss: 'dlr' needs at least 3 classes, the model has {num_classes}")
    if loss == "dlr_targeted" and num_classes < 3:
        raise ValueError(f"loss: 'dlr_targeted' needs at least 3 classes, the model has {num_classes}")
    if (targets is None) != (loss != "dlr_targeted"):
        raise ValueError(f"targets: {'required' if targets is None else 'only used'} with loss='dlr_targeted', got loss={loss!r}")
    seed = check_int("seed", seed, minimum=0, maximum=2**31 - 1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    images = check_model_images(model, images)
    labels = check_labels("labels", labels, length=len(images), num_classes=num_classes).astype(np.int32)
    aims = labels if targets is None else check_labels("targets", targets, length=len(images), num_classes=num_classes).astype(np.int32)
    if targets is not None and np.any(aims == labels):
        raise ValueError(f"targets: {int((aims == labels).sum())} targets equal their image's label")

    b = len(budgets)
    clean = predict_logits(model, images).argmax(axis=1) == labels
    correct = np.repeat(clean[None], b, axis=0)
    adversarial = np.repeat(images[None], b, axis=0)
    attacked = np.flatnonzero(budgets > 0)
    if len(attacked):
        starts = _random_starts(images.shape, restarts=restarts, seed=seed)
        kept, wrong = _run_rows(model, images, labels, aims, budgets[attacked], starts, steps=steps, loss=loss,
                                batch_size=batch_size)
        correct[attacked] &= ~wrong
        adversarial[attacked] = kept
    return RobustnessResult(
        budgets=budgets, correct=correct, success=~correct, adversarial=adversarial,
        l2=l2_distances(adversarial, images[None], batch_dims=2),
        gradient_norm=_clean_gradient_norm(model, images, labels, aims, loss=loss, batch_size=batch_size),
    )


def apgd_targeted_l2(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    budgets,
    steps: int = 100,
    targets: int = 9,
    restarts: int = 1,
    seed: int = 0,
    batch_size: int = 1000,
) -> RobustnessResult:
    """APGD-T in the L2 ball: targeted-DLR APGD towards each of the ``targets`` classes the clean image ranks
    highest after its label, ``restarts`` starts per target, each target on the pairs the earlier ones left correct.

    A pair is broken when the label changes (to any class), so the result compares with the untargeted attacks'.

    Args:
        model: Keras model returning logits for [0, 1] images (at least 3 classes).
        images: (N, H, W, C) floats in [0, 1].
        labels: N true classes.
        budgets: non-negative L2 budgets ε in [0, 1] pixel units.
        steps: gradient steps per target.
        targets: how many target classes, in the clean logits' order (AutoAttack: 9); at most classes − 1.
        restarts: random starts per target (AutoAttack: 1).
        seed: seed of the random starts; target k draws from ``seed + k``.
        batch_size: rows per compiled call.

    >>> result = apgd_targeted_l2(model, x[:100], y[:100], budgets=[0, 1, 2], steps=50, targets=3)  # doctest: +SKIP
    """
    num_classes = check_classifier(model)
    budgets = check_budgets(budgets)
    targets = check_int("targets", targets, minimum=1, maximum=max(num_classes - 1, 1))
    seed = check_int("seed", seed, minimum=0, maximum=2**31 - 1 - targets)
    images = check_model_images(model, images)
    labels = check_labels("labels", labels, length=len(images), num_classes=num_classes).astype(np.int32)
    if num_classes < 3:
        raise ValueError(f"model: APGD-T's targeted DLR loss needs at least 3 classes, the model has {num_classes}")
    logits = predict_logits(model, images)
    logits[np.arange(len(labels)), labels] = -np.inf
    ranked = np.argsort(-logits, axis=1, kind="stable")  # the other classes, most likely first
    found = None
    for k in range(targets):
        if found is None:
            found = apgd_l2(model, images, labels, budgets=budgets, steps=steps, restarts=restarts, loss="dlr_targeted",
                            targets=ranked[:, k], seed=seed + k, batch_size=batch_size)
            continue
        for b in np.flatnonzero(budgets > 0):
            pick = np.flatnonzero(found.correct[b])
            if not len(pick):
                continue
            found.take_breaks(b, pick, apgd_l2(model, images[pick], labels[pick], budgets=[budgets[b]], steps=steps, restarts=restarts,
                                               loss="dlr_targeted", targets=ranked[pick, k], seed=seed + k, batch_size=batch_size))
    return found


def checkpoints(steps: int) -> np.ndarray:
    """Per step k = 0 … steps − 1, the length w_j − w_{j−1} of the window ending after step k if iterate k + 1
    is a checkpoint w_j, else 0 (the paper's p_j schedule; w₀ = 0 is not checked)."""
    steps = check_int("steps", steps, minimum=1)
    fractions = [0.0, 0.22]
    while fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06) <= 1.0:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    marks = sorted({math.ceil(round(p * steps, 9)) for p in fractions})  # round: 0.57·100 is 57.000…01
    windows = np.zeros(steps, dtype=np.int32)
    for previous, mark in zip(marks[:-1], marks[1:], strict=True):
        windows[mark - 1] = mark - previous
    return windows


def _random_starts(shape: tuple[int, ...], *, restarts: int, seed: int) -> np.ndarray:
    """(restarts, N, H, W, C) unit-norm Gaussian directions; restart r uses its own stream (seed, r)."""
    draws = [np.random.default_rng([seed, r]).standard_normal(shape, dtype=np.float32) for r in range(restarts)]
    starts = np.stack(draws)
    norms = np.sqrt((starts.reshape(restarts, shape[0], -1) ** 2).sum(axis=2))
    return starts / norms.reshape(restarts, shape[0], *[1] * (len(shape) - 1))


def _run_rows(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, aims: np.ndarray, budgets: np.ndarray, starts: np.ndarray, *,
    steps: int, loss: str, batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """All (restart, budget, image) rows through the compiled loop; returns the (B, N, …) adversarials and
    the (B, N) flags "some restart changed the label"."""
    restarts, n, b = len(starts), len(images), len(budgets)
    groups = b * n  # one group per (budget, image), budget-major like pgd_l2
    # Row r·G + g is restart r of group g; batches take whole groups, so that a group stops as one.
    order = np.arange(restarts * groups).reshape(restarts, groups).T.ravel()
    rows_per_call = max(restarts, batch_size // restarts * restarts)
    run = compiled(model, ("apgd", loss), lambda m: _build_apgd(m, loss))
    windows = tf.constant(checkpoints(steps))
    flat_start = starts.reshape(restarts * n, *images.shape[1:])
    kept = np.empty((restarts * groups, *images.shape[1:]), dtype=np.float32)
    wrong = np.empty(restarts * groups, dtype=bool)
    best_loss = np.empty(restarts * groups, dtype=np.float32)
    for begin in range(0, len(order), rows_per_call):
        rows = order[begin : begin + rows_per_call]
        restart, group = np.divmod(rows, groups)
        image, budget = group % n, group // n
        local = np.unique(group, return_inverse=True)[1].astype(np.int32)
        out = run(
            tf.constant(images[image]), tf.constant(labels[image]), tf.constant(aims[image]), tf.constant(budgets[budget].astype(np.float32)),
            tf.constant(flat_start[restart * n + image]), tf.constant(local), tf.constant(int(local.max()) + 1), windows,
        )
        kept[rows], wrong[rows], best_loss[rows] = (t.numpy() for t in out)
    return _worst_over_restarts(kept, wrong, best_loss, restarts=restarts, shape=(b, n))


def _worst_over_restarts(
    kept: np.ndarray, wrong: np.ndarray, best_loss: np.ndarray, *, restarts: int, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the first restart that changed the label, else the restart of highest loss."""
    groups = shape[0] * shape[1]
    wrong, best_loss = wrong.reshape(restarts, groups), best_loss.reshape(restarts, groups)
    pick = np.where(wrong.any(axis=0), wrong.argmax(axis=0), best_loss.argmax(axis=0))
    chosen = kept.reshape(restarts, groups, *kept.shape[1:])[pick, np.arange(groups)]
    return chosen.reshape(*shape, *kept.shape[1:]), wrong.any(axis=0).reshape(shape)


def _loss(logits: tf.Tensor, labels: tf.Tensor, aims: tf.Tensor, loss: str) -> tf.Tensor:
    """Per-example loss the attack *ascends* (``aims``: the targets of ``"dlr_targeted"``, else unused)."""
    if loss == "cross_entropy":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
    true = tf.gather(logits, labels, batch_dims=1)
    if loss == "dlr_targeted":  # with 3 classes there is no z_π4: the scale is the untargeted one's, z_π1 − z_π3
        fourth = ordered[:, 3] if logits.shape[-1] >= 4 else ordered[:, 2]
        return -(true - tf.gather(logits, aims, batch_dims=1)) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + fourth) + 1e-12)
    others = tf.reduce_max(tf.where(tf.one_hot(labels, tf.shape(logits)[1]) > 0, -np.inf, logits), axis=1)
    return -(true - others) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def _loss_and_gradient(model: keras.Model, loss: str):
    """The compiled (logits, loss, input gradient) of ``model`` that the loop calls (:func:`loop_body`)."""

    @loop_body
    def evaluate(xa, ya, ta):
        with tf.GradientTape() as tape:
            tape.watch(xa)
            logits = attack_logits(model, xa)
            value = _loss(logits, ya, ta, loss)
        return logits, value, tape.gradient(value, xa)

    return evaluate


def _evaluate(gradient, x: tf.Tensor, labels: tf.Tensor, aims: tf.Tensor, active: tf.Tensor):
    """Loss, its input gradient and "label lost" at the active rows of ``x`` (zeros elsewhere); ``gradient`` is
    :func:`_loss_and_gradient`'s function."""
    rows = tf.where(active)
    xa, ya = tf.gather_nd(x, rows), tf.gather_nd(labels, rows)
    logits, value, grad = gradient(xa, ya, tf.gather_nd(aims, rows))
    wrong = tf.cast(tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int32), ya), tf.int32)
    size = tf.shape(labels, out_type=tf.int64)
    return (tf.scatter_nd(rows, value, size), tf.scatter_nd(rows, grad, tf.shape(x, out_type=tf.int64)),
            tf.scatter_nd(rows, wrong, size) > 0)


def _step(x, x_prev, grad, x0, eps, eta, alpha, expand):
    """z = P(x + η·g/‖g‖₂), then x ← P(x + α(z − x) + (1 − α)(x − x_prev)); a zero gradient does not move."""
    z = project_l2(x + tf.reshape(eta, expand) * normalise(grad, expand), x0, eps, expand)
    return project_l2(x + alpha * (z - x) + (1.0 - alpha) * (x - x_prev), x0, eps, expand)


def _build_apgd(model: keras.Model, loss: str):
    shape = (None, *model.input_shape[1:])
    expand = [-1] + [1] * (len(shape) - 1)
    gradient = _loss_and_gradient(model, loss)

    @tf.function(
        input_signature=[
            tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.float32), tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.int32), tf.TensorSpec([None], tf.int32),
        ]
    )
    def run(x0, labels, aims, eps, start, group, n_groups, windows):
        """``len(windows)`` APGD steps from ``x0 + ε·start`` per row; a group of rows stops once one of them
        has lost the label. Returns (first misclassified point else best-loss point, label lost, best loss)."""
        every = tf.ones_like(labels, dtype=tf.bool)
        x = project_l2(x0 + tf.reshape(eps, expand) * start, x0, eps, expand)
        value, grad, ever_wrong = _evaluate(gradient, x, labels, aims, every)
        state = dict(x_prev=x, x=x, grad=grad, value=value, kept=x, ever_wrong=ever_wrong, x_best=x, grad_best=grad,
                     best=value, best_at_check=value, eta=2.0 * eps, halved=~every, raised=tf.zeros_like(labels))
        for i in tf.range(tf.shape(windows)[0]):
            group_lost = tf.math.unsorted_segment_max(tf.cast(state["ever_wrong"], tf.int32), group, n_groups)
            active = tf.gather(group_lost, group) == 0
            if not tf.reduce_any(active):
                break
            alpha = tf.where(i > 0, MOMENTUM, 1.0)
            state = _iterate(gradient, state, x0, labels, aims, eps, active, alpha, windows[i], expand)
        found = tf.reshape(state["ever_wrong"], expand)
        return tf.where(found, state["kept"], state["x_best"]), state["ever_wrong"], state["best"]

    return run


def _iterate(gradient, state, x0, labels, aims, eps, active, alpha, window, expand):
    """One APGD step of the active rows, their judgement, and the checkpoint rule when ``window`` > 0."""
    s = dict(state)
    moved = _step(s["x"], s["x_prev"], s["grad"], x0, eps, s["eta"], alpha, expand)
    value, grad, wrong = _evaluate(gradient, moved, labels, aims, active)
    rows = tf.reshape(active, expand)
    s["x_prev"], s["x"], s["grad"] = tf.where(rows, s["x"], s["x_prev"]), tf.where(rows, moved, s["x"]), tf.where(rows, grad, s["grad"])
    s["raised"] += tf.cast(active & (value > s["value"]), tf.int32)
    s["value"] = tf.where(active, value, s["value"])
    first = tf.reshape(active & wrong & ~s["ever_wrong"], expand)
    s["kept"], s["ever_wrong"] = tf.where(first, moved, s["kept"]), s["ever_wrong"] | (active & wrong)
    better = active & (s["value"] > s["best"])
    s["x_best"] = tf.where(tf.reshape(better, expand), s["x"], s["x_best"])
    s["grad_best"] = tf.where(tf.reshape(better, expand), s["grad"], s["grad_best"])
    s["best"] = tf.where(better, s["value"], s["best"])
    # Checkpoint: halve η and go back to the best point where the loss rose too rarely or stopped rising.
    check = window > 0
    stalled = tf.cast(s["raised"], tf.float32) < RHO * tf.cast(window, tf.float32)
    halve = check & active & (stalled | (~s["halved"] & (s["best"] <= s["best_at_check"])))
    s["eta"] = tf.where(halve, s["eta"] / 2.0, s["eta"])
    s["x"] = tf.where(tf.reshape(halve, expand), s["x_best"], s["x"])
    s["grad"] = tf.where(tf.reshape(halve, expand), s["grad_best"], s["grad"])
    s["value"] = tf.where(halve, s["best"], s["value"])
    s["halved"] = tf.where(check, halve, s["halved"])
    s["best_at_check"] = tf.where(check, s["best"], s["best_at_check"])
    s["raised"] = tf.where(check, tf.zeros_like(s["raised"]), s["raised"])
    return s


def _clean_gradient_norm(model: keras.Model, images: np.ndarray, labels: np.ndarray, aims: np.ndarray, *, loss: str,
                         batch_size: int) -> np.ndarray:
    """‖∇ loss‖₂ at each clean image (float64)."""
    def build(m):
        spec = tf.TensorSpec((None, *m.input_shape[1:]), tf.float32)
        gradient = _loss_and_gradient(m, loss)

        @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)])
        def norms(x, y, t):
            _, grad, _ = _evaluate(gradient, x, y, t, tf.ones_like(y, dtype=tf.bool))
            return l2_norms(grad)

        return norms

    norms = compiled(model, ("apgd gradient", loss), build)
    parts = [norms(tf.constant(images[i : i + batch_size]), tf.constant(labels[i : i + batch_size]),
                   tf.constant(aims[i : i + batch_size])).numpy()
             for i in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float64)
