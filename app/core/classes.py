"""Stable class identifiers shared by training, evaluation and serving."""

from __future__ import annotations

from collections.abc import Mapping

CLASS_IDS: tuple[str, ...] = ("benign", "early_pre_b", "pre_b", "pro_b")

DISPLAY_NAMES: dict[str, str] = {
    "benign": "Benign (hematogones)",
    "early_pre_b": "Early Pre-B ALL",
    "pre_b": "Pre-B ALL",
    "pro_b": "Pro-B ALL",
}

MALIGNANT: dict[str, bool] = {
    "benign": False,
    "early_pre_b": True,
    "pre_b": True,
    "pro_b": True,
}


def malignant_probability(probabilities: Mapping[str, float]) -> float:
    """The malignant classes' probabilities summed: how likely blasts are, any subtype."""
    return sum(float(probabilities.get(c, 0.0)) for c in CLASS_IDS if MALIGNANT[c])


def leans_malignant(probabilities: Mapping[str, float]) -> bool:
    """The screen's lean: the malignant classes together hold at least the benign ones
    (ties lean malignant), whichever single class is the most likely."""
    blasts = malignant_probability(probabilities)
    benign = sum(float(probabilities.get(c, 0.0)) for c in CLASS_IDS if not MALIGNANT[c])
    return blasts >= benign
