"""Stable class identifiers shared by training, evaluation and serving."""

from __future__ import annotations

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
