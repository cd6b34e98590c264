"""Generates models/REPORT.md: the comparison of the paper this project reproduces (``PAPER``)
redone on the test split."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.core.classes import CLASS_IDS
from app.core.model_card import CaseRuleSpec, ModelCard, TestMetrics
from app.core.model_files import model_files, model_names
from app.core.model_store import LoadedModel, load_model
from app.core.service import InferenceService
from training.architectures import ARCHITECTURES
from training.capture import CAPTURE_HEADING, CAPTURES, Outcomes, SetScore, capture_markdown
from training.capture import run as run_captures
from training.case_eval import CASE_HEADING, case_markdown, case_results
from training.data import Sample, discover
from training.dataset import load_arrays
from training.evaluate import select_split
from training.file_numbers import file_number
from training.heat_eval import (
    HEAT_HEADING,
    WARNING_HEADING,
    heat_markdown,
    served_answers,
    warning_markdown,
    warning_result,
)
from training.heat_eval import measure as measure_heat
from training.markdown import table
from training.metrics import classification_report
from training.ood_eval import ood_markdown
from training.patient_proxy import RESULT_NAME as PATIENT_PROXY_RESULT
from training.patient_proxy import patient_proxy_markdown
from training.perturbations import PERTURBATIONS
from training.progress import track
from training.scale_fit import estimate_errors, scale_markdown
from training.segmentation_eval import agreement, agreement_markdown
from training.split import MANIFEST_NAME

SHORTCUTS = ("scale_bar_masked", "stain_shift")
REPORT_COMMAND = "python -m training report --data-dir DIR"
# The paper whose three models the comparison redoes; the best published figure is another's.
PAPER = (
    "Bhuvanewari S, Abirami A, Kavitha Datchanamoorthy et al. (Easwari Engineering College), "
    '"Acute Lymphoblastic Leukemia Detection Using Sequential, Lenet and Vggnet Models"'
)
BEST_PUBLISHED = (
    "The best published figure on this data set is 99.85%, a pretrained DenseNet201 of "
    "Ghaderzadeh et al. (Int J Intell Syst 37 (2022) 5113-5133, doi:10.1002/int.22753), "
    "also on a split by image."
)


@dataclass
class ModelRow:
    """One model's measurements on the test split."""

    model: LoadedModel
    base: TestMetrics
    ms: float
    perturbed: dict[str, float] = field(default_factory=dict)  # accuracy per perturbation

    @property
    def name(self) -> str:
        return self.model.name


def single_image_ms(model: LoadedModel, x: np.ndarray, runs: int = 50) -> float:
    """Median wall time of one single-image forward pass on the CPU."""
    one = x[:1]
    for _ in range(5):
        model.logits(one)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.logits(one)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def paper_accuracy(name: str) -> str:
    arch = ARCHITECTURES.get(name)
    return arch.paper_accuracy if arch is not None and arch.paper_accuracy else "n/a"


def measure(models_dir: Path, samples: list[Sample]) -> list[ModelRow]:
    """The whole-field models' rows; cell models are compared in the held-out-patient and
    capture sections, through the served path."""
    rows = []
    for name in model_names(models_dir):
        if ModelCard.load(model_files(models_dir, name).card).unit != "field":
            continue
        model = load_model(models_dir, name)
        x, y = load_arrays(samples, model.input_size, model.card.scale)
        row = ModelRow(
            model=model,
            base=TestMetrics(**classification_report(y, model.predict(x))),
            ms=single_image_ms(model, x),
        )
        for key, fn in track(PERTURBATIONS.items(), f"{name}: perturbations"):
            xp = np.stack([fn(img) for img in x])
            row.perturbed[key] = classification_report(y, model.predict(xp))["accuracy"]
        rows.append(row)
    return rows


def render(rows: list[ModelRow], n_test: int, extra_sections: list[str]) -> str:
    comparison = []
    for r in rows:
        card, b = r.model.card, r.base
        comparison.append(
            [
                card.architecture,
                paper_accuracy(r.name),
                _pct(b.accuracy),
                f"{b.macro_f1:.4f}",
                *(_pct(b.per_class[c]["recall"]) for c in CLASS_IDS),
                f"{card.parameters:,}",
                f"{card.file_size_bytes / 1e6:.1f} MB",
                f"{card.training['seconds'] / 60:.1f} min ({card.training['epochs_run']} epochs)",
                card.views,
                f"{r.ms:.1f} ms",
            ]
        )
    robustness = []
    for r in rows:
        base = r.base.accuracy
        robustness.append(
            [
                r.model.card.architecture,
                _pct(base),
                *(
                    f"{_pct(r.perturbed[k])} ({100 * (r.perturbed[k] - base):+.2f})"
                    for k in PERTURBATIONS
                ),
            ]
        )
    worst = {r.name: max(r.base.accuracy - r.perturbed[k] for k in SHORTCUTS) for r in rows}
    out = [
        "# Model report",
        "",
        f"Generated by `python -m training report --data-dir DIR` on "
        f"{datetime.now(UTC).date().isoformat()}. Test split: {n_test} images from "
        f"`models/{MANIFEST_NAME}` (duplicate-aware, stratified, never used to train or fit "
        "anything). Not an untouched hold-out: choices are made on the validation split, "
        "but test figures were looked at along the way, and `docs/decisions.md` says where "
        "(LeNet's dropout, first chosen on the test split and since re-chosen on "
        "validation; an early-stopped run; the uncertain rule's comparison). Image-level "
        "split: there are no patient ids, so these figures overestimate accuracy on new "
        "patients.",
        "",
        "## The paper's comparison, measured",
        "",
        f"*Paper accuracy* is what {PAPER} report for each architecture. {BEST_PUBLISHED}",
        "",
        table(
            [
                "model",
                "paper accuracy",
                "test accuracy",
                "macro-F1",
                *(f"recall {c}" for c in CLASS_IDS),
                "parameters",
                "file size",
                "training time",
                "test-time views",
                "CPU inference (1 image)",
            ],
            comparison,
        ),
        "",
        "Training time is wall time on the 2-core CPU machine, as recorded in each model's "
        "card. Inference time is the median of 50 single-image forward passes after "
        "warm-up (preprocessing excluded), all of the model's test-time views included: "
        "a model with 8 views scores the mean of the image's 8 flips and quarter turns "
        "(`app/core/orientations.py`).",
        "",
        "## Shortcut and robustness checks",
        "",
        "Accuracy on the test split after a fixed perturbation of every image "
        "(`training/perturbations.py`); the change from the unperturbed accuracy in "
        "brackets. *scale_bar_masked* paints the lower-right corner holding the scale bar "
        "with the image's mean colour; *stain_shift* is a fixed warmer, less saturated, "
        "darker stain; *blur* a Gaussian blur of radius 1.5 px; *jpeg_q30* recompression at "
        "quality 30; *rescaled_0.8* another magnification (zoomed out to 80%).",
        "",
        table(["model", "unperturbed", *PERTURBATIONS], robustness),
        "",
        "Largest loss under the two shortcut checks (target: at most 3 points): "
        + ", ".join(f"{n} {100 * v:.2f} points" for n, v in worst.items())
        + ".",
        "",
        "## Figures",
        "",
    ]
    for r in rows:
        n = r.name
        out.append(
            f"- {r.model.card.architecture}: [training curves]({n}.curves.png), "
            f"[confusion matrix]({n}.confusion.png), [ROC]({n}.roc.png)"
        )
    out.append("")
    for section in extra_sections:
        out += [section.rstrip(), ""]
    return "\n".join(out)


def capture_sections(
    models_dir: Path, samples: list[Sample], split: str = "test", command: str = REPORT_COMMAND
) -> tuple[str, str]:
    """The capture-robustness section of every served model on ``samples``, and the
    simulated-case section built from the same outcomes."""
    service = _service(models_dir)
    cards = {card.name: card for card in service.models()}
    thresholds = {name: card.calibration.uncertain_below for name, card in cards.items()}
    outcomes = run_captures(service, samples)
    scores = {
        name: {capture: SetScore.of(o, thresholds[name]) for capture, o in sets.items()}
        for name, sets in outcomes.items()
    }
    display = {name: card.display_name for name, card in cards.items()}
    captures = capture_markdown(scores, display, split, command, len(samples))
    return captures, case_section(cards, outcomes, samples, split, REPORT_COMMAND)


def capture_section(models_dir: Path, samples: list[Sample], split: str = "test") -> str:
    """The capture-robustness table of every served model on ``samples``, and the
    simulated cases built from the same outcomes."""
    return "\n".join(capture_sections(models_dir, samples, split))


def write_capture_section(
    models_dir: Path, samples: list[Sample], command: str
) -> tuple[Path, str, str]:
    """Recompute the capture section on ``samples`` (the test split) and replace it in
    ``models_dir/REPORT.md``, leaving every other section (the cases too) as it was; the
    case section's text is returned, not written."""
    captures, cases = capture_sections(models_dir, samples, "test", command)
    path = models_dir / "REPORT.md"
    # Read just before writing: other sections change while the suite runs for an hour.
    path.write_text(replace_section(path.read_text(), CAPTURE_HEADING, captures))
    return path, captures, cases


def _service(models_dir: Path) -> InferenceService:
    # Any served model will do as the default: a folder may hold only the one being compared.
    return InferenceService(models_dir, default_model=model_names(models_dir)[0]).load()


def case_section(
    cards: dict[str, ModelCard],
    outcomes: dict[str, dict[str, Outcomes]],
    samples: list[Sample],
    split: str,
    command: str,
) -> str:
    """The report's case section from the capture suite's outcomes on ``samples``."""
    numbers = np.array([file_number(s) for s in samples])
    thresholds = {name: card.calibration.uncertain_below for name, card in cards.items()}
    rules = {name: card.case_rule or CaseRuleSpec() for name, card in cards.items()}
    display = {name: card.display_name for name, card in cards.items()}
    results = case_results(outcomes, numbers, thresholds, rules)
    sets = sorted({capture for sets in outcomes.values() for capture in sets})
    note = (
        f"Sets: {'all ' if len(sets) == len(CAPTURES) else ''}{len(sets)} of the "
        f"{len(CAPTURES)} capture sets ({', '.join(sets)})."
    )
    return case_markdown(results, display, rules, split, note, command)


def write_case_section(
    models_dir: Path, samples: list[Sample], captures: Sequence[str], command: str
) -> Path:
    """Recompute the case section on ``samples`` (the test split) through ``captures`` and
    replace it in ``models_dir/REPORT.md``, leaving every other section as it was."""
    service = _service(models_dir)
    cards = {card.name: card for card in service.models()}
    outcomes = run_captures(service, samples, {c: CAPTURES[c] for c in captures})
    section = case_section(cards, outcomes, samples, "test", command)
    path = models_dir / "REPORT.md"
    path.write_text(replace_section(path.read_text(), CASE_HEADING, section))
    return path


# Sections other commands write into REPORT.md: a full report keeps them as they were.
BLOCKS_HEADING = "## Held-out patients"
STAIN_HEADING = "## Greyscale and stain-swapped photographs"


def replace_first_section(text: str, heading: str, section: str) -> str:
    """``text`` with the level-2 section starting with ``heading`` replaced by ``section``
    (put before the first level-2 section when there is none)."""
    if any(line.startswith(heading) for line in text.splitlines()):
        return replace_section(text, heading, section)
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    joined = [*lines[:first], *section.rstrip().splitlines(), "", *lines[first:]]
    return "\n".join(joined).rstrip() + "\n"


def keep_sections(old: str, new: str) -> str:
    """``new`` with the sections of ``old`` that other commands write (the held-out patients
    first, the stain section last), so a full report does not drop them."""
    blocks = _section(old, BLOCKS_HEADING)
    if blocks:
        new = replace_first_section(new, BLOCKS_HEADING, blocks)
    stain = _section(old, STAIN_HEADING)
    if stain:
        new = replace_section(new, STAIN_HEADING, stain)
    return new


def replace_section(text: str, heading: str, section: str) -> str:
    """``text`` with the level-2 section starting with ``heading`` replaced by ``section``
    (appended when there is none)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        return text.rstrip() + "\n\n" + section.rstrip() + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    kept = [*lines[:start], *section.rstrip().splitlines(), "", *lines[end:]]
    return "\n".join(kept).rstrip() + "\n"


def heat_warning_section(models_dir: Path, samples: list[Sample], split: str = "test") -> str:
    """How often each served model's background warning fires on ``samples``, old rule beside."""
    service = _service(models_dir)
    results = {
        card.name: warning_result(card, served_answers(service, card.name, samples))
        for card in service.models()
    }
    return warning_markdown(results, split)


def write_heat_warning_section(models_dir: Path, samples: list[Sample]) -> tuple[Path, str]:
    """Recompute the background-warning section on ``samples`` (the test split) and replace
    it in ``models_dir/REPORT.md``, leaving every other section as it was."""
    section = heat_warning_section(models_dir, samples)
    path = models_dir / "REPORT.md"
    text = path.read_text()
    if WARNING_HEADING not in text:
        # First time: placed after the Grad-CAM section, where a full report puts it.
        text = replace_section(text, HEAT_HEADING, _section(text, HEAT_HEADING) + "\n\n" + section)
    path.write_text(replace_section(text, WARNING_HEADING, section))
    return path, section


def _section(text: str, heading: str) -> str:
    """The level-2 section of ``text`` that starts with ``heading`` (empty when none)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        return ""
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).rstrip()


def write_report(data_dir: str | Path, models_dir: Path) -> Path:
    """Measure every model on the test split and write ``models_dir/REPORT.md``."""
    # Discovery hashes every file: done once, shared by the sections that need the test split.
    samples = select_split(discover(data_dir), models_dir / MANIFEST_NAME, "test")
    rows = measure(models_dir, samples)
    n_test = rows[0].base.n_images if rows else 0
    sections = [
        capture_section(models_dir, samples),
        scale_markdown(estimate_errors(samples), rows[0].model.card.scale if rows else None),
        heat_markdown(measure_heat([r.model for r in rows], samples)),
        heat_warning_section(models_dir, samples),
        ood_markdown([r.model.card for r in rows]),
        patient_proxy_markdown(models_dir / PATIENT_PROXY_RESULT),
        agreement_markdown(agreement(data_dir)),
    ]
    path = models_dir / "REPORT.md"
    old = path.read_text() if path.exists() else ""
    path.write_text(keep_sections(old, render(rows, n_test, extra_sections=sections)))
    return path
