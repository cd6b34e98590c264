"""The model card: everything known about one trained model, stored as ``<name>.json``.

``ModelCard.load`` and ``ModelCard.save`` are the only reader and writer of that
file. Each field has its one default here, so every reader sees the same value
for a missing key. Loading refuses unknown keys, so a misspelt key fails loudly.
This module is light (no numpy, no TensorFlow): the model list can be read cheaply.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

from app.core.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT

# Test-time views a model may average (``app.core.orientations``), and what each means.
VIEW_DESCRIPTIONS: dict[int, str] = {
    1: "the image as it is",
    8: "mean of the logits (and OOD features) over the image's 8 flips and 90-degree rotations",
}
# The same for a cell model, whose views are those of each cell's crop.
CELL_VIEW_DESCRIPTIONS: dict[int, str] = {
    1: "each cell's crop as it is",
    8: "mean of each cell's logits, attention score and features over its crop's 8 flips and "
    "90-degree rotations",
}

T = TypeVar("T")


class ModelCardError(ValueError):
    """A model card is missing a required field, has an unknown one, or a wrong type."""


@dataclass
class InferenceSpec:
    """How the served model turns an input into logits."""

    views: int = 1
    description: str = VIEW_DESCRIPTIONS[1]

    @classmethod
    def for_views(cls, views: int, unit: str = "field") -> InferenceSpec:
        """The spec of ``views`` views for a model that reads ``unit`` ("field" or "cell")."""
        if views not in VIEW_DESCRIPTIONS:
            raise ValueError(f"views must be one of {tuple(VIEW_DESCRIPTIONS)}, got {views!r}")
        described = CELL_VIEW_DESCRIPTIONS if unit == "cell" else VIEW_DESCRIPTIONS
        return cls(views=views, description=described[views])


@dataclass
class ScaleSpec:
    """The cells' scale in the training photographs (``app.core.scale``), from the train split.

    Sizes are in pixels of a ``field_px`` square field, the training photographs' own
    size. A photograph whose cells measure within ``low_px`` to ``high_px`` is used as
    it is; one outside is resampled to the nearer end of that range, and refused
    when that takes more than ``max_resample`` times.
    """

    method: str = ""
    field_px: int = 224
    reference_px: float = 0.0
    low_px: float = 0.0
    high_px: float = 0.0
    max_resample: float = 1.6
    n_images: int = 0


@dataclass
class SplitManifestRef:
    """The split manifest beside the model, and its checksum.

    It is the one the model was trained with, or a later one that only moved images
    towards train (``python -m training resplit``), so the model never saw a held-out image.
    """

    file: str = "split.csv"
    sha256: str = ""


@dataclass
class Calibration:
    """Temperature scaling and the "uncertain" rule, both fitted on the validation split."""

    method: str = ""
    temperature: float = 1.0
    test_ece_before: float | None = None
    test_ece_after: float | None = None
    # None: the model sets no threshold, so nothing it says is called uncertain.
    uncertain_below: float | None = None
    uncertain_rule: str | None = None
    uncertain_val_rate: float | None = None
    uncertain_test_rate: float | None = None
    test_accuracy_when_confident: float | None = None
    test_accuracy_when_uncertain: float | None = None


@dataclass
class CaseRuleSpec:
    """The case rule's thresholds (``app.core.case_verdict``) and how they were chosen."""

    method: str = ""
    # A case is benign only when at least this share of its fields could be answered.
    min_used_share: float = 1 / 3
    # An answered malignant field escalates the case when its malignant probability is at
    # least this (0: every answered malignant field escalates, the rule before fitting).
    escalate_at: float = 0.0
    # Validation cases the thresholds were fitted on, and their outcome there.
    val_cases: int = 0
    # All-benign validation cases called malignant, and cases with malignant fields called
    # benign, each as a share of such cases; uncertain as a share of all cases.
    val_false_escalation_rate: float | None = None
    val_miss_rate: float | None = None
    val_uncertain_rate: float | None = None

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> CaseRuleSpec:
        """The rule a case stored when it was created; keys of older rules are dropped, and
        thresholds they lacked take the defaults above (which escalate on any malignant field)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class HeatRuleSpec:
    """When the result page says an answer rests on the background, and how that threshold
    was chosen on the validation split (``app.core.explanation.heat_share``)."""

    method: str = ""
    # Warn when the heat's density on the cells (their share of the heat over their share of
    # the field) is below this; 1 (no denser than anywhere else) is the rule before fitting.
    min_density: float = 1.0
    # Confident validation answers the threshold was fitted on, and how often it fired there.
    val_correct: int = 0
    val_wrong: int = 0
    val_no_cells: int = 0
    val_fires_on_correct: float | None = None
    val_fires_on_wrong: float | None = None


@dataclass
class PatientBlocks:
    """Held-out-patient figures: k-fold cross-validation over blocks of neighbouring files
    (``python -m training cell-blocks`` / ``field-blocks``); ``ci95`` is the accuracy's
    block-bootstrap interval, ``intervals`` every figure's."""

    folds: int = 0
    accuracy: float = 0.0
    benign_recall: float = 0.0
    malignant_recall: float = 0.0
    macro_f1: float = 0.0
    ci95: list[float] = field(default_factory=list)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    n_fields: int = 0
    method: str = ""


@dataclass
class KnownFailure:
    """A confusion the model is known to make: ``count`` of ``of`` images of ``true_class``
    in ``split`` were called ``called``; ``summary`` says it in words."""

    true_class: str = ""
    called: str = ""
    count: int = 0
    of: int = 0
    split: str = ""
    summary: str = ""


@dataclass
class DataProvenance:
    """Where the training photographs came from, and how they were labelled and split."""

    source: str = ""
    data_set: str = ""
    doi: str = ""
    patients: int = 0
    # Photographs the project had, the held-back ones excluded.
    images: int = 0
    labels: str = ""
    held_back: str = ""
    split: str = ""


@dataclass
class IntendedUse:
    """What the model is for, what it must not be used for, where it is known to fail, and
    where its training data came from (the text is ``training.intended_use``'s)."""

    purpose: str = ""
    out_of_scope: list[str] = field(default_factory=list)
    known_failures: list[KnownFailure] = field(default_factory=list)
    data: DataProvenance = field(default_factory=DataProvenance)


@dataclass
class TestMetrics:
    """Scores on the held-out test split."""

    __test__ = False  # not a pytest test class, despite its name

    n_images: int = 0
    accuracy: float = 0.0
    macro_f1: float = 0.0
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    ece: float = 0.0


@dataclass
class OodSection:
    """The fitted out-of-distribution guard (its arrays are in ``<name>.ood.npz``)."""

    method: str = ""
    feature_layer: str = ""
    file: str = ""
    sha256: str = ""
    threshold: float = 0.0
    component_scales: dict[str, float] = field(default_factory=dict)
    shrinkage: dict[str, float] = field(default_factory=dict)
    val_quantile: float = 0.0
    n_train: int = 0
    val_flag_rate: float = 0.0
    test_flag_rate: float = 0.0
    test_flag_rate_by_component: dict[str, float] = field(default_factory=dict)
    n_val: int = 0
    n_test: int = 0
    foreign_flag_rate: float = 0.0
    n_foreign: int = 0
    foreign_flag_rate_by_kind: dict[str, float] = field(default_factory=dict)
    foreign_count_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class ModelCard:
    """One model's metadata. ``name``, ``version`` and ``input_size`` are required."""

    name: str
    architecture: str = ""
    description: str = ""
    version: str = ""
    trained_at: str = ""
    class_ids: list[str] = field(default_factory=lambda: list(CLASS_IDS))
    display_names: dict[str, str] = field(default_factory=lambda: dict(DISPLAY_NAMES))
    malignant: dict[str, bool] = field(default_factory=lambda: dict(MALIGNANT))
    input_size: int = 0
    preprocessing: dict[str, str] = field(default_factory=dict)
    # None: the model takes the whole photograph at any scale (trained before scale checks).
    scale: ScaleSpec | None = None
    inference: InferenceSpec = field(default_factory=InferenceSpec)
    # The training run's configuration and outcome, as ``training.train`` recorded them.
    training: dict[str, Any] = field(default_factory=dict)
    split_manifest: SplitManifestRef = field(default_factory=SplitManifestRef)
    parameters: int = 0
    file_size_bytes: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)
    test_metrics: TestMetrics | None = None
    ood: OodSection | None = None
    # None: not fitted; the case rule then uses CaseRuleSpec's defaults.
    case_rule: CaseRuleSpec | None = None
    # None: not fitted; the heat warning then uses HeatRuleSpec's defaults.
    heat_rule: HeatRuleSpec | None = None
    # "field": the model reads the whole photograph; "cell": each leukocyte (app.core.cells).
    unit: str = "field"
    # None: not measured on held-out patient blocks.
    patient_blocks: PatientBlocks | None = None
    # None: written before cards stated the model's intended use and limits.
    intended_use: IntendedUse | None = None

    @property
    def display_name(self) -> str:
        return self.architecture or self.name

    @property
    def views(self) -> int:
        return self.inference.views

    @property
    def test_accuracy(self) -> float | None:
        return None if self.test_metrics is None else self.test_metrics.accuracy

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        for required in ("name", "version", "input_size"):
            if not data.get(required):
                raise ModelCardError(f"the model card has no {required!r}")
        return _build(cls, data, "card")

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelCardError(f"{path} does not hold a JSON object")
        try:
            return cls.from_dict(data)
        except ModelCardError as exc:
            raise ModelCardError(f"{path}: {exc}") from None

    @classmethod
    def update(cls, path: str | Path, **changes: Any) -> ModelCard:
        """Load the card at ``path``, set the named fields, and save it whole."""
        card = cls.load(path)
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(card)})
        if unknown:
            raise ModelCardError(f"a card has no {', '.join(unknown)}")
        for key, value in changes.items():
            setattr(card, key, value)
        card.save(path)
        return card

    def save(self, path: str | Path) -> None:
        """Write the card; a complete file replaces the old one (never a half-written one)."""
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(self.to_json())
        partial.replace(path)


def _build(cls: type[T], data: object, where: str) -> T:
    """An instance of dataclass ``cls`` from a JSON object, nested dataclasses included."""
    if not isinstance(data, dict):
        raise ModelCardError(f"{where} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ModelCardError(f"{where} has unknown keys: {', '.join(unknown)}")
    values = {key: _value(hints[key], value, f"{where}.{key}") for key, value in data.items()}
    return cls(**values)


def _value(hint: Any, value: object, where: str) -> object:
    """``value`` as the field type ``hint`` asks for: a nested dataclass is built."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else ()
    if value is None and type(None) in options:
        return None
    target = next((o for o in options if o is not type(None)), hint)
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        return _build(target, value, where)
    item = next(iter(typing.get_args(target)), None) if typing.get_origin(target) is list else None
    if dataclasses.is_dataclass(item) and isinstance(item, type) and isinstance(value, list):
        return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    expected = _JSON_TYPES.get(typing.get_origin(target) or target)
    if expected is not None and not _matches(value, target, expected):
        raise ModelCardError(f"{where} must be {_describe(target)}, got {value!r}")
    return value


_JSON_TYPES: dict[object, type | tuple[type, ...]] = {
    str: str,
    int: int,
    float: (int, float),
    bool: bool,
    list: list,
    dict: dict,
}


def _matches(value: object, target: object, expected: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # bool is an int to Python, never to a card
        return target is bool
    return isinstance(value, expected)


_DESCRIPTIONS: dict[object, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


def _describe(target: object) -> str:
    return _DESCRIPTIONS.get(typing.get_origin(target) or target, "valid")
