"""Turns the core's predictions and model cards into JSON and into a clinician's words."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from PIL import Image

from app.core.cells.exclusions import EXCLUSION_REASONS
from app.core.classes import (
    CLASS_IDS,
    DISPLAY_NAMES,
    MALIGNANT,
    leans_malignant,
    malignant_probability,
)
from app.core.imaging import jpeg_bytes
from app.core.model_card import ModelCard
from app.core.prediction import CellReading, Prediction

OOD_VERDICT = "Outside what the model was trained on — do not rely on this result"
UNCERTAIN_VERDICT = "Uncertain"
THUMBNAIL_SIDE = 480
# What the user can do about each reason the out-of-distribution guard gives.
OOD_FIXES = {
    "features": (
        "This does not look like the blood smears the model learned from: check that it is a "
        "May-Grünwald-Giemsa-stained peripheral blood smear photographed with the 100x objective"
    ),
    "image": (
        "Colours, brightness or sharpness are unlike a May-Grünwald-Giemsa smear photograph: "
        "check the staining, the focus and the camera's white balance (the background should "
        "look near white), and send the camera's original file"
    ),
}
BLASTS_SUSPECTED = "Blasts suspected"
# Early Pre-B, Pre-B and Pro-B are immunophenotype categories: morphology only suggests them.
SUBTYPE_NOTE = "from morphology; the subtype needs flow cytometry"
# The heat warning states the measured figures, then what they are measured against.
HEAT_FIGURES = "{on_cells} of the heat lies on white cells that cover {area} of the field"
HEAT_FITTED = (
    "less concentrated on the cells than in {usual} of this model's correct answers on "
    "validation images"
)
HEAT_UNFITTED = "no more concentrated on the cells than on the rest of the field"
# Measured: the warning is no more frequent on wrong answers than on right ones.
HEAT_MEANING = (
    "this answer may rest on the background. That says where the model looked, not that the "
    "answer is wrong: check the cells yourself"
)
HEAT_NO_CELLS = (
    "No white cells were found in the field, so whether this answer rests on them or on the "
    "background cannot be judged"
)


def percent(p: float) -> str:
    """A calibrated probability for people: never "100.0%" or "0.0%", which it never is."""
    if p > 0.999:
        return ">99.9%"
    if p < 0.001:
        return "<0.1%"
    return f"{p * 100:.1f}%"


def class_verdict(class_id: str) -> str:
    """A class in a clinician's words: a malignant class is a morphological pattern of
    blasts, e.g. "Blasts suspected: pattern most like Pre-B ALL", never a diagnosis."""
    if MALIGNANT[class_id]:
        return f"{BLASTS_SUSPECTED}: pattern most like {DISPLAY_NAMES[class_id]}"
    return "Benign: hematogones" if class_id == "benign" else f"Benign: {DISPLAY_NAMES[class_id]}"


def subtype_json(class_id: str | None, malignant: bool) -> dict[str, Any] | None:
    """The subtype as what it is: a pattern seen in morphology (None for a benign answer)."""
    if class_id is None or not malignant:
        return None
    return {
        "class": class_id,
        "label": DISPLAY_NAMES[class_id],
        "basis": "morphological_pattern",
        "note": SUBTYPE_NOTE,
    }


def verdict(p: Prediction) -> str:
    """The headline: the class only when neither guard objects."""
    if p.status == "out_of_distribution":
        return OOD_VERDICT
    if p.status == "uncertain":
        return UNCERTAIN_VERDICT
    return class_verdict(p.class_id)


def verdict_detail(p: Prediction) -> str | None:
    """For an uncertain result: the leading class, named as the most likely only, and the
    malignant classes' sum where it outweighs a benign leader (the screen's lean)."""
    if p.status != "uncertain" or p.uncertain_below is None:
        return None
    detail = (
        f"Most likely {p.label} ({percent(p.confidence)}), below the "
        f"{percent(p.uncertain_below)} this model needs for a verdict"
    )
    if not p.malignant and leans_malignant(p.probabilities):
        blasts = malignant_probability(p.probabilities)
        detail += (
            f"; the three malignant patterns together hold {percent(blasts)}, so it leans malignant"
        )
    return detail


def timings_json(p: Prediction) -> dict[str, float]:
    """Milliseconds per step that ran, and the total."""
    t, e = p.timings, p.explanation
    steps: dict[str, float | None] = {
        "decode": t.decode_ms,
        "preprocess": t.preprocess_ms,
        "model": t.model_ms,
        "ood": t.ood_ms,
        "segmentation": e.segmentation_ms if e else None,
        "gradcam": e.gradcam_ms if e else None,
        "outline": e.outline_ms if e else None,
        "total": p.total_ms,
    }
    return {k: round(v, 2) for k, v in steps.items() if v is not None}


def ood_fixes(p: Prediction) -> list[str]:
    """What to do about each reason the guard flagged the image for."""
    if p.ood is None or not p.ood.out_of_distribution:
        return []
    return [OOD_FIXES[part] for part in p.ood.components if part in OOD_FIXES]


def ood_json(p: Prediction) -> dict[str, Any]:
    if p.ood is None:
        return {
            "available": False,
            "score": None,
            "threshold": None,
            "reasons": [],
            "message": f"no fitted OOD guard for model {p.model.name!r}; the check was not run",
        }
    return {
        "available": True,
        "score": round(p.ood.score, 4),
        "threshold": round(p.ood.threshold, 4),
        "reasons": list(p.ood.reasons),
        "fixes": ood_fixes(p),
    }


def scale_json(p: Prediction) -> dict[str, Any] | None:
    """The cells' measured scale against the training photographs' (None: not checked)."""
    if p.scale is None:
        return None
    s = p.scale
    return {
        "cell_size_px": round(s.size_px, 2),
        "field_cell_size_px": round(s.field_size_px, 2),
        "ratio_to_training": round(s.ratio, 3),
        "uncertainty": None if s.uncertainty is None else round(s.uncertainty, 3),
        "in_training_range": s.in_training_range,
        "resampled_by": round(s.resampled_by, 3),
    }


def scale_text(p: Prediction) -> str | None:
    """The scale check in words, for the result page."""
    if p.scale is None:
        return None
    s = p.scale
    spread = f" (±{100 * s.uncertainty:.0f}%)" if s.uncertainty is not None else ""
    size = f"cells {s.ratio:.2f}× the training images' median size{spread}"
    if s.in_training_range:
        return f"{size}: within the training range, used as taken"
    return f"{size}: resampled {s.resampled_by:.2f}× into the training range"


def prediction_json(p: Prediction) -> dict[str, Any]:
    """The API's answer for one image."""
    out: dict[str, Any] = {
        "class": p.class_id,
        "label": p.label,
        "malignant": p.malignant,
        "verdict": verdict(p),
        "status": p.status,
        "verdict_detail": verdict_detail(p),
        # A malignant class is a morphological pattern; the diagnosis needs flow cytometry.
        "subtype": subtype_json(p.class_id, p.malignant and p.status == "malignant"),
        "confidence": p.confidence,
        "out_of_distribution": p.out_of_distribution,
        "ood": ood_json(p),
        "uncertain": p.uncertain,
        "uncertain_below": p.uncertain_below,
        "probabilities": dict(p.probabilities),
        # The screen's lean: the three malignant classes summed against the benign one.
        "malignant_probability": round(malignant_probability(p.probabilities), 6),
        "leans_malignant": leans_malignant(p.probabilities),
        "model": {
            "name": p.model.name,
            "version": p.model.version,
            "display_name": p.model.display_name,
        },
        "elapsed_ms": round(p.total_ms, 2),
        "timings_ms": timings_json(p),
        "image": {
            "format": p.image_format,
            "width": p.photograph_size[0],
            "height": p.photograph_size[1],
        },
        "scale": scale_json(p),
        "unit": p.model.unit,
    }
    if p.cells is not None:
        out.update(cell_reading_json(p.cells))
    if p.explanation is not None:
        e = p.explanation
        out["segmentation"] = e.cells.to_dict()
        out["explanation"] = {
            "gradcam_class": e.gradcam_class,
            "gradcam_png": _base64(e.gradcam_png),
            "cells_png": _base64(e.cells_png),
            "heat_on_cells": None if e.heat_share is None else round(e.heat_share.on_cells, 4),
            "cells_area": None if e.heat_share is None else round(e.heat_share.cells_area, 4),
        }
    return out


def cell_reading_json(reading: CellReading) -> dict[str, Any]:
    """A cell model's leukocytes: each one's box, class, probabilities and status, the count
    per class, and the objects left out by reason."""
    return {
        "cells": [
            {
                "box": list(cell.box),
                "class": cell.class_id,
                "label": DISPLAY_NAMES[cell.class_id],
                "probabilities": dict(cell.probabilities),
                "attention": round(cell.attention, 4),
                "status": cell.status,
            }
            for cell in reading.cells
        ],
        "cell_counts": reading.counts,
        "excluded_cells": dict(reading.excluded),
        "um_per_px": round(reading.um_per_px, 5),
    }


def model_json(card: ModelCard) -> dict[str, Any]:
    """A served model's card for the API, without the per-epoch training history."""
    out = {k: v for k, v in card.to_dict().items() if k != "history"}
    out.update(display_name=card.display_name, views=card.views)
    return out


@dataclass(frozen=True)
class Bar:
    class_id: str
    label: str
    malignant: bool
    percent: float
    text: str
    top: bool


def probability_bars(p: Prediction) -> list[Bar]:
    """One bar per class, in the fixed class order, the predicted one marked."""
    return [
        Bar(
            class_id=c,
            label=DISPLAY_NAMES[c],
            malignant=MALIGNANT[c],
            percent=round(p.probabilities[c] * 100, 1),
            text=percent(p.probabilities[c]),
            top=c == p.class_id,
        )
        for c in CLASS_IDS
    ]


@dataclass(frozen=True)
class CellClassCount:
    """A line of a cell model's legend: a class, its outline's colour (a CSS class) and how
    many of the photograph's leukocytes the model gave it."""

    class_id: str
    label: str
    count: int
    share: str


def cell_legend(reading: CellReading) -> list[CellClassCount]:
    """The classes' counts in the fixed class order, and the uncertain cells (outlined grey)
    when there are any; each cell counts once, under its most likely class."""
    total = len(reading.cells)
    rows = [
        CellClassCount(c, DISPLAY_NAMES[c], n, f"{100 * n / total:.0f}%" if total else "n/a")
        for c, n in reading.counts.items()
    ]
    unsure = sum(1 for cell in reading.cells if cell.status == "uncertain")
    if unsure:
        share = f"{100 * unsure / total:.0f}%"
        rows.append(CellClassCount("uncertain", "Of these, uncertain (grey)", unsure, share))
    return rows


@dataclass(frozen=True)
class ResultPage:
    """Everything the result page shows, worded and encoded."""

    prediction: Prediction
    verdict: str
    verdict_detail: str | None
    bars: list[Bar]
    thumbnail: str
    gradcam: str
    cells: str
    heat: str
    gradcam_label: str
    cell_count: int
    confidence: str
    scale: str | None
    ood_fixes: list[str]
    heat_on_cells: str | None
    cells_area: str | None
    heat_warning: str | None
    # A cell model's leukocytes by class, in the colours of their outlines (else None).
    cell_classes: list[CellClassCount] | None = None
    # What a cell model left out, by reason, in words (None when nothing was).
    cells_excluded: str | None = None


def excluded_text(excluded: dict[str, int]) -> str | None:
    """The objects a cell model left out, e.g. "2 cut by the edge of the photograph"."""
    parts = [f"{n} {EXCLUSION_REASONS.get(reason, reason)}" for reason, n in excluded.items() if n]
    return "; ".join(parts) or None


def result_page(p: Prediction) -> ResultPage:
    """The result page of an explained prediction."""
    if p.explanation is None:
        raise ValueError("the result page needs an explained prediction")
    e = p.explanation
    share = e.heat_share
    return ResultPage(
        prediction=p,
        verdict=verdict(p),
        verdict_detail=verdict_detail(p),
        bars=probability_bars(p),
        thumbnail=thumbnail_data_uri(p.pixels()[0]),
        gradcam=png_data_uri(e.gradcam_png),
        cells=png_data_uri(e.cells_png),
        heat=png_data_uri(e.heat_png),
        gradcam_label=DISPLAY_NAMES[e.gradcam_class],
        cell_count=e.cells.count if p.cells is None else len(p.cells.cells),
        confidence=percent(p.confidence),
        scale=scale_text(p),
        ood_fixes=ood_fixes(p),
        heat_on_cells=None if share is None else f"{share.on_cells * 100:.0f}%",
        cells_area=None if share is None else f"{share.cells_area * 100:.0f}%",
        heat_warning=heat_warning(p),
        cell_classes=None if p.cells is None else cell_legend(p.cells),
        cells_excluded=None if p.cells is None else excluded_text(p.cells.excluded),
    )


def heat_warning(p: Prediction) -> str | None:
    """What the page says when the heat is not on the cells, or cannot be weighed against
    them; None when it is dense enough on them, or without an (explained, non-empty) map."""
    check = p.heat_check
    share = None if p.explanation is None else p.explanation.heat_share
    if check is None or share is None or check == "on_cells":
        return None
    if check == "no_cells":
        return HEAT_NO_CELLS
    figures = HEAT_FIGURES.format(
        on_cells=f"{share.on_cells * 100:.0f}%", area=f"{share.cells_area * 100:.0f}%"
    )
    rule = p.model.heat_rule
    if rule is None or rule.val_fires_on_correct is None:
        compared = HEAT_UNFITTED
    else:
        compared = HEAT_FITTED.format(usual=f"{1 - rule.val_fires_on_correct:.0%}")
    return f"{figures}, {compared}: {HEAT_MEANING}"


def thumbnail_data_uri(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """A JPEG data: URI of a downscaled copy, so the page shows the upload without storing it."""
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    return "data:image/jpeg;base64," + _base64(jpeg_bytes(thumb, quality=85))


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + _base64(png)


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
