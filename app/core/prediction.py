"""What the inference service returns: a typed prediction and, on request, its explanation.

Wording for people (verdict sentences, percentages) is the web layer's job
(``app.web.analysis.presenter``); these types carry the facts and the machine-readable status.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from app.core.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT
from app.core.guards.uncertainty import is_uncertain
from app.core.model_card import HeatRuleSpec, ModelCard

if TYPE_CHECKING:
    # The guard module loads TensorFlow, the others SciPy and scikit-image: cases and the
    # command line read predictions without them.
    from app.core.cells.crops import FieldCells
    from app.core.explanation.heat_share import HeatCheck, HeatShare
    from app.core.explanation.segmentation import Segmentation
    from app.core.guards.ood import OodResult
    from app.core.scale import ScaleCheck

Status = Literal["out_of_distribution", "uncertain", "malignant", "benign"]
CellStatus = Literal["classified", "uncertain"]


@dataclass(frozen=True)
class CellAnswer:
    """One leukocyte a cell model read: its box [x, y, w, h] in the uploaded photograph's
    pixels, its most likely class, its probabilities, its weight in the field's answer, and
    ``uncertain`` when its top class falls below the cell rule's confidence."""

    box: tuple[int, int, int, int]
    class_id: str
    probabilities: dict[str, float]
    attention: float
    status: CellStatus


@dataclass(frozen=True)
class CellReading:
    """A cell model's leukocytes of one photograph, and the objects it left out by reason."""

    cells: list[CellAnswer]
    excluded: dict[str, int]
    # Micrometres per pixel of the uploaded photograph, from its red cells' size.
    um_per_px: float
    # Uploaded pixels per decoded pixel (a big JPEG is decoded smaller).
    upload_scale: float = 1.0
    # The cell path's reading (crops, their windows), for the per-cell Grad-CAM.
    source: FieldCells | None = field(default=None, repr=False, compare=False)

    @property
    def counts(self) -> dict[str, int]:
        """Leukocytes per most likely class (a differential of the field)."""
        counts = {c: 0 for c in CLASS_IDS}
        for cell in self.cells:
            counts[cell.class_id] += 1
        return counts


@dataclass(frozen=True)
class Timings:
    """Milliseconds of one image's own work per step: in a batch, ``model_ms`` is its share of
    the pass, and ``ood_ms`` its own statistics, which run beside the pass, plus its share of
    the scoring; ``total_ms`` is their sum. ``ood_ms`` is None when the model has no guard."""

    decode_ms: float
    preprocess_ms: float
    model_ms: float
    total_ms: float
    ood_ms: float | None = None


@dataclass(frozen=True)
class Explanation:
    """The Grad-CAM overlay and the segmented leukocytes of one prediction."""

    gradcam_class: str
    gradcam_png: bytes = field(repr=False)
    cells: Segmentation = field(repr=False)
    cells_png: bytes = field(repr=False)
    # The heat alone (RGBA, same size as the pictures), laid over them at the user's opacity.
    heat_png: bytes = field(repr=False)
    # None when no part of the image raised the class's score (an empty map).
    heat_share: HeatShare | None
    segmentation_ms: float
    gradcam_ms: float
    outline_ms: float

    @property
    def total_ms(self) -> float:
        return self.segmentation_ms + self.gradcam_ms + self.outline_ms


@dataclass(frozen=True)
class Prediction:
    """One image's prediction.

    ``ood`` is None when the model has no fitted OOD guard (the check is then
    unavailable, not passed); ``uncertain_below`` is None when the model's card
    sets no threshold (then nothing is called uncertain). ``min_heat_density`` is
    the card's heat threshold (``heat_share.min_density``). ``explanation`` is set
    by ``InferenceService.explain``.
    """

    class_id: str
    probabilities: dict[str, float]
    model: ModelCard
    timings: Timings
    image_format: str
    # The decoded upright RGB image, the square field of it the model saw and the
    # exact model input, so the explanation reuses them instead of decoding again; the two
    # images are None for a case's photograph read in an image process (its pixels stay there),
    # the input too where that process ran the network.
    image: Image.Image | None = field(repr=False, compare=False)
    field_image: Image.Image | None = field(repr=False, compare=False)
    model_input: np.ndarray | None = field(repr=False, compare=False)
    # Width and height of the uploaded photograph (a big JPEG is analysed smaller).
    photograph_size: tuple[int, int]
    # None when the model has no scale check (it takes the whole photograph).
    scale: ScaleCheck | None = None
    ood: OodResult | None = None
    uncertain_below: float | None = None
    min_heat_density: float = HeatRuleSpec().min_density
    explanation: Explanation | None = None
    # A cell model's leukocytes; None for a model that reads the whole field.
    cells: CellReading | None = None

    def pixels(self) -> tuple[Image.Image, Image.Image]:
        """The decoded photograph and the field the model saw; ValueError for a photograph
        read in an image process, whose pixels were not sent back."""
        if self.image is None or self.field_image is None:
            raise ValueError("this photograph was read in an image process: no pixels here")
        return self.image, self.field_image

    def network_input(self) -> np.ndarray:
        """The exact input the network took; ValueError where the photograph's image process
        ran the network and kept it."""
        if self.model_input is None:
            raise ValueError("this photograph's image process ran the network: no input here")
        return self.model_input

    @property
    def label(self) -> str:
        return DISPLAY_NAMES[self.class_id]

    @property
    def malignant(self) -> bool:
        return MALIGNANT[self.class_id]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.class_id]

    @property
    def out_of_distribution(self) -> bool | None:
        """True/False from the OOD guard; None when the model has no guard."""
        return None if self.ood is None else self.ood.out_of_distribution

    @property
    def uncertain(self) -> bool:
        """Calibrated top-class probability below the model's ``uncertain_below``."""
        return is_uncertain(
            np.array([self.probabilities[c] for c in CLASS_IDS]), self.uncertain_below
        )

    @property
    def heat_check(self) -> HeatCheck | None:
        """Whether the heat is dense enough on the cells; None without an explanation or
        when the heatmap is empty."""
        if self.explanation is None or self.explanation.heat_share is None:
            return None
        return self.explanation.heat_share.check(self.min_heat_density)

    @property
    def status(self) -> Status:
        """What kind of verdict this is; an out-of-distribution image outranks everything."""
        if self.out_of_distribution:
            return "out_of_distribution"
        if self.uncertain:
            return "uncertain"
        return "malignant" if self.malignant else "benign"

    @property
    def total_ms(self) -> float:
        """Classification and, when it was asked for, explanation."""
        extra = self.explanation.total_ms if self.explanation is not None else 0.0
        return self.timings.total_ms + extra

    def with_explanation(self, explanation: Explanation) -> Prediction:
        return replace(self, explanation=explanation)
