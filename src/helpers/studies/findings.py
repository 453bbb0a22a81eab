"""What chapters 1, 4 and 5 say about their results: the numbers and sentences their prose glues, and the digits they show.

Each function takes what the chapter measured (per-image arrays, the rows of a results file) and returns plain values
— a dict by glue name, or the indices of the images to show — so that no statistic and no choice of words depends on
notebook code. The thresholds that switch a sentence are constants of :mod:`helpers.studies.verdicts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from helpers.defences.filters import Defence
from helpers.studies.evaluate import JND, perceptibility
from helpers.studies.verdicts import SPREAD_SHARE
from helpers.training.models import paper_units

# The paper's images are 299 px wide (ImageNet at InceptionV3's size) and its recommended blur is σ = 1.5.
PAPER_IMAGE_SIZE = 299
PAPER_SIGMA = 1.5
PAPER_ALPHA = 0.1  # the step of the paper's listing, in the network's preprocessed units


# --- Chapter 1: how visible the changes are ------------------------------------------------------------------


def median_or_nan(values: np.ndarray) -> float:
    """The median of ``values``, NaN when there are none."""
    return float(np.median(values)) if len(values) else float("nan")


def visibility_glue(visible: Mapping[str, np.ndarray], success: np.ndarray, *, spread_share: float = SPREAD_SHARE
                    ) -> dict[str, Any]:
    """Chapter 1's numbers on how visible the successful perturbations are (``visible`` from
    :func:`helpers.studies.evaluate.perceptibility`), and the sentence that says whether a median digit has more than
    ``spread_share`` of its pixels changed by more than 8/255."""
    ok = np.asarray(success, dtype=bool)
    share = median_or_nan(visible["share_above_jnd"][ok])
    if not ok.any():
        words = "no attack reached its target, so there is no change to look at"
    elif share > spread_share:
        words = ("so the change is not confined to a few pixels: it is spread over the strokes and around them, and easy "
                 "to see once amplified (the δ ×10 rows above)")
    else:
        words = ("so the change reaches past 8/255 on only a few pixels of a typical digit, on and near the strokes (the "
                 "δ ×10 rows above)")
    return {
        "rms_median": median_or_nan(visible["rms"][ok]),
        "linf_median": median_or_nan(visible["linf"][ok]),
        "share_median": 100 * share,
        "share_images_any": 100 * float((visible["share_above_jnd"][ok] > 0).mean()) if ok.any() else float("nan"),
        "jnd255": JND * 255,
        "share_sentence": words,
    }


def median_visibility(images: np.ndarray, adversarial: np.ndarray, success: np.ndarray) -> dict[str, float]:
    """Median RMS, L∞ and share of pixels above the just-noticeable change, over the successful attacks (NaN: none)."""
    success = np.asarray(success, dtype=bool)
    seen = perceptibility(images[success], adversarial[success]) if success.any() else None
    return {f"median_{k}": float(np.median(seen[k])) if seen else float("nan") for k in ("rms", "linf", "share_above_jnd")}


def rms_per_image(l2: np.ndarray, success: np.ndarray, *, input_shape: Sequence[int]) -> np.ndarray:
    """Per attacked image, the RMS change per pixel; a failed attack counts as infinitely far (so a median is over
    every attacked image)."""
    return np.where(np.asarray(success, dtype=bool), np.asarray(l2) / np.sqrt(np.prod(input_shape)), np.inf)


def worst_and_middle(rms: np.ndarray, success: np.ndarray, *, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` successful attacks with the largest RMS change (largest first) and ``n`` from the middle of the
    successful ones ordered by RMS: positions into ``rms``."""
    ok = np.asarray(success, dtype=bool)
    order = np.argsort(np.where(ok, rms, -np.inf))[::-1]
    successful = order[: int(ok.sum())]
    start = max(0, len(successful) // 2 - n // 2)
    return successful[:n], successful[start: start + n]


def paper_step_glue() -> dict[str, float]:
    """The paper's step α in pixel units for InceptionV3 and VGG16 (its listing steps in preprocessed units)."""
    inception, vgg = paper_units("inception_v3"), paper_units("vgg16")
    return {"units_inception": inception, "units_vgg": vgg, "alpha_inception": PAPER_ALPHA / inception,
            "alpha_vgg": PAPER_ALPHA / vgg, "alpha_ratio": vgg / inception}


# --- Chapter 4: what the validation split picks ------------------------------------------------------------


def validation_glue(validation: Sequence[Mapping], choices: Mapping[str, str | None]) -> dict[str, Any]:
    """Chapter 4's closing sentence: the filters the validation split picks (:func:`helpers.studies.scores.validation_choices`),
    which chapters 5 and 6 use, and how many validation digits each score attacks."""
    def label(key: str) -> str:
        return Defence.parse(choices[key]).label if choices.get(key) else "none (no filter has a score)"

    return {
        "n_validation_images": int(min(row["val_n_images"] for row in validation)),
        "validation_sentence": f"By the paper's score the best filter overall is {label('best_defence')}, the best Gaussian "
        f"filter is {label('best_gaussian')} and the best median filter is {label('best_median')}.",
    }


# --- Chapter 5: the minimum-norm attacks, the resolution study, the claims --------------------------------------


def min_norm_glue(min_norm: Sequence[Mapping], score_rows: Sequence[Mapping], *, attacks: Sequence[str]) -> dict[str, Any]:
    """Chapter 5's numbers on the minimum-norm attacks (``min_norm`` rows of
    :func:`helpers.studies.scores.min_norm_rows`): the undefended model's medians, how far the paper's measure
    overstates the strongest, how often DDN wins among ``attacks``, and the images and seeds scored."""
    mn, table = pd.DataFrame(min_norm), pd.DataFrame(score_rows)
    none_rows = mn[mn["defence"] == "none"].set_index("attack")
    paper_l2 = mn[mn["attack"] == "paper"].set_index("defence")["median_l2"]
    ratio = (paper_l2 / mn[mn["attack"] == "strongest"].set_index("defence")["median_l2"]).dropna()
    winners = mn[mn["attack"].isin(attacks)].sort_values("median_l2").groupby("defence").first()["attack"]
    return {
        "mn_paper_none": none_rows.loc["paper", "median_l2"],
        "mn_ddn_none": none_rows.loc["minimum_norm", "median_l2"],
        "mn_gap_none": 100 * (1 - none_rows.loc["minimum_norm", "median_l2"] / none_rows.loc["paper", "median_l2"]),
        "mn_overstate_max": 100 * (ratio.max() - 1) if len(ratio) else float("nan"),
        "mn_overstate_label": Defence.parse(ratio.idxmax()).label if len(ratio) else "no model",
        "mn_ddn_wins": int((winners == "minimum_norm").sum()),
        "mn_models": len(winners),
        "n_scored_images": int(table["n_images"].iloc[0]),
        "n_seeds_used": int(table["n_seeds"].min()),
    }


def resolution_glue(score_rows: Sequence[Mapping], resolution: Sequence[Mapping] | None, *, factor: int,
                    image_size: int) -> dict[str, Any]:
    """Chapter 5's resolution section: how much of the image σ = 1.5 spans here and in the paper, and the sentence
    comparing the best σ at the native size with the best upsampled one (``resolution`` rows of
    :func:`helpers.studies.scores.resolution_rows`; ``None`` when the profile skips the study)."""
    out: dict[str, Any] = {"sigma_share_28": 100 * PAPER_SIGMA / image_size,
                           "sigma_share_299": 100 * PAPER_SIGMA / PAPER_IMAGE_SIZE,
                           "relative_blur": PAPER_IMAGE_SIZE / image_size, "resolution_factor_value": factor}
    if factor <= 1 or resolution is None:
        return out | {"resolution_sentence": "This profile skips the upsampled study (resolution_factor = 1)."}
    table, res = pd.DataFrame(score_rows), pd.DataFrame(resolution)
    native = table[table["kind"].isin(["none", "gaussian"])]
    best_native = native.loc[native["score"].idxmax(), "parameter"]
    best_res = res.loc[res["score"].idxmax(), "relative_sigma"]
    same = abs(best_res - best_native) < 1e-9
    return out | {"resolution_sentence": (
        f"At {image_size} px the best of these σ by score is {best_native:g}; upsampled, it is "
        f"{best_res * factor:g} px, i.e. {best_res:g} in the original image's pixels. "
        + ("They coincide" if same else "They differ")
        + " — but with one training seed, a few dozen attacked digits and no interval this is a look, not a finding: "
          "scores of neighbouring σ differ by less than such a sample resolves, so the book draws no conclusion from it "
          "and no verdict rests on it.")}


# Chapter 5's prose names these (claim, measure) pairs; one the run's grid did not measure reads as inconclusive.
PROSE_CLAIMS = (("C3", "paper"), ("C3", "strongest"), ("C4", "accuracy"), ("C5", "paper"), ("C5", "strongest"))


def claim_glue(claims: Sequence[Mapping], choices: Mapping[str, str | None], score_rows: Sequence[Mapping],
               validation: Sequence[Mapping]) -> dict[str, Any]:
    """Chapter 5's closing section: the filter the validation split picked with its validation and test scores, each
    claim's verdict and evidence per measure (:data:`PROSE_CLAIMS` that were not measured are inconclusive), and
    whether the two measures of ‖δ‖₂ disagree on C3 or C5."""
    table, val = pd.DataFrame(score_rows), pd.DataFrame(validation).set_index("defence")
    best = table.loc[table["defence"] == choices["best_defence"]]  # empty when no attack succeeded: no filter has a score
    out: dict[str, Any] = {
        "best_label": best["label"].iloc[0] if len(best) else "none (no attack reached its target, so no filter has a score)",
        "best_val_score": float(val.loc[choices["best_defence"], "val_score"]) if len(best) else float("nan"),
        "best_score": float(best["score"].iloc[0]) if len(best) else float("nan"),
        "best_gaussian_label": Defence.parse(choices["best_gaussian"]).label if choices.get("best_gaussian") else "none",
        "n_validation_images": int(val["val_n_images"].min()),
    }
    by = {(c["claim"], c["measure"]): c for c in claims}
    for key, measure in [*by, *(pair for pair in PROSE_CLAIMS if pair not in by)]:
        claim = by.get((key, measure), {"verdict": "inconclusive", "evidence": "not measured in this run's grid"})
        out[f"{key}_{measure}_verdict"], out[f"{key}_{measure}_evidence"] = claim["verdict"], claim["evidence"]
    differ = [k for k in ("C3", "C5") if (k, "paper") in by and (k, "strongest") in by
              and by[(k, "paper")]["verdict"] != by[(k, "strongest")]["verdict"]]
    out["measures_differ"] = ("The two measures disagree on " + " and ".join(differ) + ": the verdict on the strongest "
                              "measure is the one to trust." if differ else "Both measures give the same verdicts here.")
    return out
