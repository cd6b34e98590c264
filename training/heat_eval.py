"""Where the models look: the share of Grad-CAM heat on the segmented leukocytes.

A model that reads cell morphology puts its heat on the leukocytes; one that
reads the smear's look (red cells, background, the scale bar) puts it elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.core.classes import CLASS_IDS, DISPLAY_NAMES
from app.core.errors import AnalysisRefusedError
from app.core.explanation.gradcam import GradCam
from app.core.explanation.heat_share import HeatShare, heat_share
from app.core.explanation.segmentation import Segmentation, segment
from app.core.model_card import HeatRuleSpec, ModelCard
from app.core.model_files import model_files
from app.core.model_store import LoadedModel
from app.core.preprocessing import load_image, to_model_input
from app.core.service import InferenceService
from training.augment import SCALE_BAR_BOX
from training.data import DataSetError, Sample
from training.markdown import table
from training.metrics import wilson
from training.progress import track

PER_CLASS = 10
HEAT_HEADING = "## Where the models look (Grad-CAM)"
# The warning may fire on at most this share of the correct, confident validation answers.
MAX_FIRES_ON_CORRECT = 0.10
# The rule before density: warn when less than this share of the heat lies on the cells.
OLD_MIN_ON_CELLS = 0.5


def heat_shares(
    cam: GradCam, image: Image.Image, cells: Segmentation | None = None
) -> tuple[float, float, float] | None:
    """Shares of the top class's heat on the (widened) leukocytes and in the scale-bar
    corner, and the share of the image the widened leukocytes cover; None without heat.

    The cell share is the served result page's (``app.core.explanation.heat_share``);
    ``cells`` is ``segment(image)``, passed in when several models share it.
    """
    heat, _, _ = cam.heatmap_top(to_model_input(image, cam.input_size))
    share = heat_share(heat, segment(image) if cells is None else cells)
    if share is None:
        return None
    heat = np.clip(np.asarray(Image.fromarray(heat).resize(image.size)), 0.0, None)
    h, w = heat.shape
    corner = heat[int(h * SCALE_BAR_BOX[1]) :, int(w * SCALE_BAR_BOX[0]) :].sum()
    return share.on_cells, float(corner / heat.sum()), share.cells_area


def spread(samples: Sequence[Sample], per_class: int) -> list[Sample]:
    """``per_class`` samples of each class, spread over its sorted files (neighbouring
    files come from one patient and share a stain)."""
    picked: list[Sample] = []
    for label in range(len(CLASS_IDS)):
        of_class = sorted((s for s in samples if s.label == label), key=lambda s: s.path)
        if of_class:
            idx = np.linspace(0, len(of_class) - 1, min(per_class, len(of_class)))
            picked += [of_class[i] for i in np.unique(idx.round().astype(int))]
    return picked


def summarise(found: list[tuple[int, tuple[float, float, float] | None]]) -> dict[str, Any]:
    """Mean shares overall and per class, how many images have most heat on cells, and
    how many have an empty map (no part of the image raised the class's score)."""

    def stats(rows: list[tuple[float, float, float]]) -> dict[str, Any]:
        if not rows:
            return {"n": 0}
        arr = np.array(rows)
        return {
            "n": len(rows),
            "on_cells": float(arr[:, 0].mean()),
            "corner": float(arr[:, 1].mean()),
            "cell_area": float(arr[:, 2].mean()),
            "majority_on_cells": float((arr[:, 0] > 0.5).mean()),
        }

    out: dict[str, Any] = {
        "overall": stats([r for _, r in found if r is not None]),
        "empty_maps": sum(r is None for _, r in found),
        "n_images": len(found),
    }
    out["per_class"] = {
        c: stats([r for lab, r in found if lab == i and r is not None])
        for i, c in enumerate(CLASS_IDS)
    }
    return out


def measure(
    models: Sequence[LoadedModel],
    samples: Sequence[Sample],
    per_class: int = PER_CLASS,
    layer: str | None = None,
) -> dict[str, Any]:
    """Heat shares of each model on ``per_class`` images of each class of ``samples``.

    ``layer`` explains every model at that layer instead of its automatic choice.
    """
    # Decoded and segmented once; every model is scored on the same images and masks.
    picked = spread(samples, per_class)
    images = [(s.label, load_image(s.path)) for s in picked]
    shown = [(label, image, segment(image)) for label, image in images]
    results = {}
    for model in models:
        cam = GradCam(model, layer_name=layer)
        found = [
            (label, heat_shares(cam, image, cells))
            for label, image, cells in track(shown, f"Grad-CAM heat of {model.name}")
        ]
        results[model.name] = {
            "architecture": model.card.architecture,
            "layer": cam.layer_name,
            **summarise(found),
        }
    return results


def heat_markdown(results: dict[str, Any], split: str = "test", per_class: int = PER_CLASS) -> str:
    header = [
        "model",
        "layer",
        "empty maps",
        "heat on cells",
        "cells' area",
        "images with most heat on cells",
        *(f"on cells: {DISPLAY_NAMES[c]}" for c in CLASS_IDS),
        "scale-bar corner",
    ]
    rows = []
    nan = float("nan")  # a model whose every map is empty has no shares
    for r in results.values():
        o = r["overall"]
        per = [f"{r['per_class'][c].get('on_cells', float('nan')):.3f}" for c in CLASS_IDS]
        rows.append(
            [
                r["architecture"],
                f"`{r['layer']}`",
                f"{r['empty_maps']} of {r['n_images']}",
                f"{o.get('on_cells', nan):.3f}",
                f"{o.get('cell_area', nan):.3f}",
                f"{100 * o.get('majority_on_cells', nan):.0f}%",
                *per,
                f"{o.get('corner', nan):.3f}",
            ]
        )
    return "\n".join(
        [
            HEAT_HEADING,
            "",
            "Share of the predicted class's Grad-CAM heat on the segmented leukocytes (mask "
            "widened by 4 px per 224 px of side, as on the result page) and in the scale-bar "
            f"corner, on {per_class} {split} images per class; *cells' area* is the share of "
            "the image the widened leukocytes cover. "
            "A model reading cell morphology would put most of its heat (> 0.5) on them. "
            "*Empty maps*: images where no part of the image raised the predicted class's "
            "score, so the heatmap shows nothing (left out of the means).",
            "",
            table(header, rows),
        ]
    )


@dataclass(frozen=True)
class Answer:
    """One image's served answer (not out of distribution) and where its heat lies."""

    correct: bool
    uncertain: bool
    # None when the heatmap is empty (no part of the image raised the class's score).
    share: HeatShare | None


def served_answers(service: InferenceService, name: str, samples: Sequence[Sample]) -> list[Answer]:
    """Each image through the served path (``classify``, then ``explain``) as the result page
    gets it; refused and out-of-distribution images are not answers and are left out."""
    answers = []
    for sample in track(samples, f"heat of {name}'s answers"):
        try:
            prediction = service.classify(sample.path.read_bytes(), name)
        except AnalysisRefusedError:
            continue
        if prediction.status == "out_of_distribution":
            continue
        explanation = service.explain(prediction).explanation
        assert explanation is not None  # explain always sets it
        answers.append(
            Answer(
                correct=prediction.class_id == sample.class_id,
                uncertain=prediction.status == "uncertain",
                share=explanation.heat_share,
            )
        )
    return answers


def fit_min_density(
    correct: Sequence[HeatShare | None], max_fires: float = MAX_FIRES_ON_CORRECT
) -> float:
    """The highest density threshold that fires on at most ``max_fires`` of ``correct`` (the
    correct answers' shares): it flags as many wrong answers as that cost allows.

    Answers without a density (empty map, no cells) never fire but count in the total; the
    threshold never fires on every measured answer.
    """
    densities = np.sort([d for s in correct if s is not None and (d := s.density) is not None])
    if densities.size == 0:
        raise DataSetError("no correct answer has heat on found cells to fit the heat rule on")
    allowed = min(math.floor(max_fires * len(correct)), densities.size - 1)
    if allowed == 0:
        return float(densities[0])
    return float((densities[allowed - 1] + densities[allowed]) / 2)


def fires_new(min_density: float) -> Callable[[HeatShare | None], bool]:
    """The density rule at ``min_density``: no cells found is no warning of this kind."""
    return lambda share: share is not None and share.check(min_density) == "elsewhere"


def fires_old(share: HeatShare | None) -> bool:
    """The rule before density: less than half the heat on the cells."""
    return share is not None and share.on_cells < OLD_MIN_ON_CELLS


@dataclass(frozen=True)
class Rate:
    """How often a warning fired among ``n`` answers."""

    fired: int
    n: int

    @property
    def share(self) -> float | None:
        return self.fired / self.n if self.n else None

    def wilson(self) -> tuple[float, float] | None:
        """The Wilson score interval of the share; None without answers."""
        return wilson(self.fired, self.n) if self.n else None

    def text(self) -> str:
        interval = self.wilson()
        if interval is None:
            return "no answers"
        low, high = interval
        return f"{self.fired} of {self.n} ({self.fired / self.n:.0%}; {low:.0%}-{high:.0%})"


# The answer groups a warning is scored on: confident (neither out of distribution nor
# uncertain) correct and wrong answers, and every wrong answer, uncertain ones included.
GROUPS: dict[str, Callable[[Answer], bool]] = {
    "correct": lambda a: a.correct and not a.uncertain,
    "wrong": lambda a: not a.correct and not a.uncertain,
    "wrong_any": lambda a: not a.correct,
}


def warning_rates(
    answers: Sequence[Answer], fires: Callable[[HeatShare | None], bool]
) -> dict[str, Rate]:
    """How often ``fires`` warns in each of ``GROUPS``."""
    rates = {}
    for group, member in GROUPS.items():
        shares = [a.share for a in answers if member(a)]
        rates[group] = Rate(sum(fires(s) for s in shares), len(shares))
    return rates


def no_cells(answers: Sequence[Answer]) -> int:
    """Confident answers whose field had no cells, where the rule cannot judge."""
    return sum(not a.uncertain and a.share is not None and a.share.density is None for a in answers)


def fit_heat_rule(val: Sequence[Answer], max_fires: float = MAX_FIRES_ON_CORRECT) -> HeatRuleSpec:
    """The density threshold fitted on ``val`` (validation answers) and its figures there."""
    correct = [a.share for a in val if GROUPS["correct"](a)]
    threshold = round(fit_min_density(correct, max_fires), 4)
    rates = warning_rates(val, fires_new(threshold))
    return HeatRuleSpec(
        method=(
            "the highest density threshold that fires on at most "
            f"{max_fires:.0%} of the correct, confident validation answers"
        ),
        min_density=threshold,
        val_correct=rates["correct"].n,
        val_wrong=rates["wrong"].n,
        val_no_cells=no_cells(val),
        val_fires_on_correct=_rounded(rates["correct"].share),
        val_fires_on_wrong=_rounded(rates["wrong"].share),
    )


def _rounded(share: float | None) -> float | None:
    return None if share is None else round(share, 4)


def save_heat_rule(models_dir: Path, name: str, rule: HeatRuleSpec) -> ModelCard:
    return ModelCard.update(model_files(models_dir, name).card, heat_rule=rule)


@dataclass(frozen=True)
class WarningResult:
    """One model's heat warnings on a split, under its fitted rule and under the old one."""

    display_name: str
    min_density: float
    fitted: bool
    new: dict[str, Rate]
    old: dict[str, Rate]
    no_cells: int


def warning_result(card: ModelCard, answers: Sequence[Answer]) -> WarningResult:
    threshold = (card.heat_rule or HeatRuleSpec()).min_density
    return WarningResult(
        display_name=card.display_name,
        min_density=threshold,
        fitted=card.heat_rule is not None,
        new=warning_rates(answers, fires_new(threshold)),
        old=warning_rates(answers, fires_old),
        no_cells=no_cells(answers),
    )


WARNING_HEADING = "## The background warning: how often it fires"


def warning_markdown(results: dict[str, WarningResult], split: str = "test") -> str:
    """Per model, how often each rule warns on correct and on wrong answers of ``split``."""
    header = [
        "model",
        "rule",
        "fires on correct, confident answers",
        "fires on wrong, confident answers",
        "fires on wrong answers, uncertain included",
    ]
    rows = []
    for r in results.values():
        fitted = "fitted on validation" if r.fitted else "default, not fitted"
        rows.append(
            [
                r.display_name,
                f"density < {r.min_density:g} ({fitted})",
                *(r.new[g].text() for g in GROUPS),
            ]
        )
        rows.append(
            [r.display_name, f"old: heat on cells < {OLD_MIN_ON_CELLS:.0%}"]
            + [r.old[g].text() for g in GROUPS]
        )
    no_cells_text = ", ".join(f"{r.display_name} {r.no_cells}" for r in results.values())
    wrong = sum(r.new["wrong"].n for r in results.values())
    return "\n".join(
        [
            WARNING_HEADING,
            "",
            "Generated by `python -m training heat-warning --data-dir DIR --update-report` "
            f"(this section only). Every {split} image is sent through the served path; "
            "out-of-distribution and refused images are not answers and are left out. "
            "The result page warns that an answer rests on the background when the heat's "
            "*density* on the cells (the share of the heat on the widened cells divided by "
            "the share of the field they cover) is below the model's threshold, fitted by "
            "`python -m training fit-heat` on the validation split as the highest threshold "
            f"that fires on at most {MAX_FIRES_ON_CORRECT:.0%} of the correct, confident "
            "validation answers. The old rule warned when less than half the heat lay on the "
            "cells. Each cell: warnings of answers (share; 95% Wilson interval).",
            "",
            table(header, rows),
            "",
            "Confident answers whose field had no cells (the page says the heat cannot be "
            f"judged; neither a warning nor silence): {no_cells_text}. Wrong, confident "
            f"answers in all: {wrong}. A warning that picked out errors would fire on them far "
            "more often than on correct answers; read those columns by their intervals.",
        ]
    )
