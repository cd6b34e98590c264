"""Turns uploaded image bytes into a typed, calibrated, guarded prediction.

``InferenceService`` loads every model in a models folder once per process,
builds its Grad-CAM and out-of-distribution guard, warms them up, and is then
shared by all request threads. Each prediction carries the OOD verdict, the
"uncertain" flag; the segmented cells, Grad-CAM and outline PNGs are added
on request (``explain=True``). It knows nothing about Flask, so it can be used
from scripts and tests directly.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT
from app.explain import GradCam, overlay_png
from app.model_store import LoadedModel, load_model, model_names, softmax
from app.ood import OodGuard, OodNotFittedError, OodResult, is_uncertain
from app.preprocessing import (
    MAX_PIXELS,
    ImageDecodeError,
    ImageTooLargeError,
    load_image,
    to_model_input,
)
from app.segmentation import DISPLAY_SIDE, Segmentation, downscale, outline_png, segment

__all__ = [
    "ALLOWED_FORMATS", "ImageDecodeError", "ImageTooLargeError", "InferenceService", "ModelInfo",
    "NotReadyError", "Prediction", "Timings", "UnknownModelError", "UnsupportedImageError",
    "sniff_format", "verdict",
]

log = logging.getLogger(__name__)

OOD_VERDICT = "Outside what the model was trained on — do not rely on this result"
UNCERTAIN_VERDICT = "Uncertain"

# Formats accepted from uploads; anything else Pillow could read is refused (415).
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")
FORMAT_NAMES = "JPEG, PNG, TIFF, BMP, GIF (first frame) or WebP"
# Leading bytes of the allowed formats: a file that starts like an image but that
# Pillow cannot identify is a damaged image (422), not a wrong type (415).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


class UnsupportedImageError(ValueError):
    """The upload is not one of the accepted image formats (decided from its content)."""


class UnknownModelError(ValueError):
    """The requested model is not served by this process."""


class NotReadyError(RuntimeError):
    """Models are not loaded and warmed up yet."""


class NoModelsError(RuntimeError):
    """The models folder holds no usable model."""


@dataclass(frozen=True)
class ModelInfo:
    """What the pages and the API show about a served model."""

    name: str
    display_name: str
    version: str
    input_size: int
    description: str
    test_accuracy: float | None
    views: int
    metadata: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_loaded(cls, model: LoadedModel) -> ModelInfo:
        meta = model.metadata
        accuracy = meta.get("test_metrics", {}).get("accuracy")
        return cls(
            name=model.name,
            display_name=str(meta.get("architecture") or model.name),
            version=model.version,
            input_size=model.input_size,
            description=str(meta.get("description", "")),
            test_accuracy=None if accuracy is None else float(accuracy),
            views=model.views,
            metadata=meta,
        )

    def public_dict(self) -> dict[str, Any]:
        """Metadata for the API, without the per-epoch training history arrays."""
        meta = {k: v for k, v in self.metadata.items() if k != "history"}
        meta.update(name=self.name, display_name=self.display_name, version=self.version,
                    input_size=self.input_size, views=self.views)
        return meta


@dataclass(frozen=True)
class Timings:
    """Milliseconds per step; the optional steps are None when they did not run."""

    decode_ms: float
    preprocess_ms: float
    model_ms: float
    total_ms: float
    ood_ms: float | None = None
    segmentation_ms: float | None = None
    gradcam_ms: float | None = None
    outline_ms: float | None = None

    def as_dict(self) -> dict[str, float]:
        steps = {"decode": self.decode_ms, "preprocess": self.preprocess_ms,
                 "model": self.model_ms, "ood": self.ood_ms,
                 "segmentation": self.segmentation_ms, "gradcam": self.gradcam_ms,
                 "outline": self.outline_ms, "total": self.total_ms}
        return {k: round(v, 2) for k, v in steps.items() if v is not None}


@dataclass
class Prediction:
    """One image's prediction.

    ``ood`` is None when the model has no fitted OOD guard (the check is then
    unavailable, not passed); ``uncertain_below`` is None when the model's
    metadata sets no threshold (then nothing is called uncertain).
    ``extras`` is where add-ons attach optional results without reshaping this
    type (the "explanation" PNG bytes); they appear in ``to_dict`` under their
    own keys, bytes as base64 text.
    """

    class_id: str
    probabilities: dict[str, float]
    model: ModelInfo
    timings: Timings
    image_format: str
    # The decoded upright RGB image and the exact model input, so add-ons
    # (explanations, segmentation) reuse them instead of decoding again.
    image: Image.Image = field(repr=False, compare=False)
    model_input: np.ndarray = field(repr=False, compare=False)
    ood: OodResult | None = None
    uncertain_below: float | None = None
    cells: Segmentation | None = field(default=None, repr=False, compare=False)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return DISPLAY_NAMES[self.class_id]

    @property
    def malignant(self) -> bool:
        return MALIGNANT[self.class_id]

    @property
    def out_of_distribution(self) -> bool | None:
        """True/False from the OOD guard; None when the model has no guard."""
        return None if self.ood is None else self.ood.out_of_distribution

    @property
    def uncertain(self) -> bool:
        """Calibrated top-class probability below the model's ``uncertain_below``."""
        if self.uncertain_below is None:
            return False
        return is_uncertain(np.array(list(self.probabilities.values())), self.uncertain_below)

    @property
    def status(self) -> str:
        """What kind of verdict this is: out_of_distribution, uncertain, malignant or benign."""
        if self.out_of_distribution:
            return "out_of_distribution"
        if self.uncertain:
            return "uncertain"
        return "malignant" if self.malignant else "benign"

    @property
    def verdict(self) -> str:
        if self.out_of_distribution:
            return OOD_VERDICT
        if self.uncertain:
            return UNCERTAIN_VERDICT
        return verdict(self.class_id)

    @property
    def verdict_detail(self) -> str | None:
        """For an uncertain result: the leading class, named as the most likely only."""
        if self.status != "uncertain" or self.uncertain_below is None:
            return None
        return (f"Most likely {self.label} ({self.confidence * 100:.1f}%), below the "
                f"{self.uncertain_below * 100:.1f}% this model needs for a verdict")

    @property
    def confidence(self) -> float:
        return self.probabilities[self.class_id]

    def ood_dict(self) -> dict[str, Any]:
        if self.ood is None:
            return {"available": False, "score": None, "threshold": None, "reasons": [],
                    "message": f"no fitted OOD guard for model {self.model.name!r}; "
                               "the check was not run"}
        return {"available": True, "score": round(self.ood.score, 4),
                "threshold": round(self.ood.threshold, 4), "reasons": list(self.ood.reasons)}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "class": self.class_id,
            "label": self.label,
            "malignant": self.malignant,
            "verdict": self.verdict,
            "status": self.status,
            "verdict_detail": self.verdict_detail,
            "confidence": self.confidence,
            "out_of_distribution": self.out_of_distribution,
            "ood": self.ood_dict(),
            "uncertain": self.uncertain,
            "uncertain_below": self.uncertain_below,
            "probabilities": dict(self.probabilities),
            "model": {"name": self.model.name, "version": self.model.version,
                      "display_name": self.model.display_name},
            "elapsed_ms": round(self.timings.total_ms, 2),
            "timings_ms": self.timings.as_dict(),
            "image": {"format": self.image_format, "width": self.image.width,
                      "height": self.image.height},
        }
        if self.cells is not None:
            out["cells"] = self.cells.to_dict()
        out.update({k: _jsonable(v) for k, v in self.extras.items()})
        return out


def verdict(class_id: str) -> str:
    """The result in a clinician's words, e.g. "Malignant: Pre-B ALL"."""
    if MALIGNANT[class_id]:
        return f"Malignant: {DISPLAY_NAMES[class_id]}"
    return "Benign: hematogones" if class_id == "benign" else f"Benign: {DISPLAY_NAMES[class_id]}"


def uncertain_threshold(metadata: dict[str, Any]) -> float | None:
    """The model's ``calibration.uncertain_below``, or None when its metadata sets none."""
    value = metadata.get("calibration", {}).get("uncertain_below")
    return None if value is None else float(value)


def sniff_format(data: bytes) -> str:
    """The upload's image format from its content (never its name).

    Raises ImageDecodeError for empty or damaged images and
    UnsupportedImageError for anything that is not an accepted image format.
    Only the header is read. Absurd declared sizes raise ImageTooLargeError here;
    the pixel limit itself is enforced by ``load_image``.
    """
    if not data:
        raise ImageDecodeError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
                return str(image.format)
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"its header declares over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels "
            f"(a decompression bomb?); the limit is {MAX_PIXELS:,} pixels"
        ) from None
    except UnidentifiedImageError:
        claimed = _signature(data)
        if claimed:
            message = f"the file starts like a {claimed} image but is damaged"
            raise ImageDecodeError(message) from None
        raise UnsupportedImageError(
            f"the file is not a supported image; upload {FORMAT_NAMES}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"cannot read the image header: {exc}") from exc


def _signature(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class InferenceService:
    """Serves every model of a folder; load once per process, then share across threads."""

    def __init__(self, models_dir: str | Path, default_model: str = "lenet") -> None:
        self.models_dir = Path(models_dir)
        self._default = default_model
        self._lock = threading.Lock()
        self._models: dict[str, LoadedModel] = {}
        self._infos: dict[str, ModelInfo] = {}
        self._cams: dict[str, GradCam] = {}
        self._guards: dict[str, OodGuard | None] = {}
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        """True once every model is loaded and has answered one warm-up prediction."""
        return self._ready.is_set()

    @property
    def default_model(self) -> str:
        return self._default

    def load(self) -> InferenceService:
        """Load and warm up every model; idempotent and safe to call from several threads."""
        with self._lock:
            if self._ready.is_set():
                return self
            names = model_names(self.models_dir)
            if not names:
                raise NoModelsError(
                    f"no models in {self.models_dir} (need <name>.keras with <name>.json); "
                    "set MODELS_DIR to a folder of trained models"
                )
            if self._default not in names:
                raise NoModelsError(
                    f"default model {self._default!r} is not in {self.models_dir} "
                    f"(found: {', '.join(names)}); set DEFAULT_MODEL"
                )
            for name in names:
                model = load_model(self.models_dir, name)
                if tuple(model.class_ids) != CLASS_IDS:
                    raise NoModelsError(
                        f"model {name!r} predicts {model.class_ids}, the app expects {CLASS_IDS}"
                    )
                self._cams[name] = GradCam(model)  # traces its graph here, not per request
                self._guards[name] = self._load_guard(model)
                self._warm_up(name, model)
                self._models[name] = model
                self._infos[name] = ModelInfo.from_loaded(model)
            self._ready.set()
        return self

    def _load_guard(self, model: LoadedModel) -> OodGuard | None:
        try:
            return OodGuard.load(self.models_dir, model)
        except OodNotFittedError as exc:
            log.warning("serving model %r without an out-of-distribution check: %s "
                        "(run `python -m training fit-ood`)", model.name, exc)
            return None

    def _warm_up(self, name: str, model: LoadedModel) -> None:
        """One prediction through every path so the first request traces nothing."""
        size = model.input_size
        blank = np.zeros((size, size, 3), np.float32)
        model.predict(blank[None])
        guard = self._guards[name]
        if guard is not None:
            features, _ = guard.forward(blank)
            guard.score_features(features, Image.new("RGB", (size, size)))
        self._cams[name].heatmap(blank, 0)

    def ood_guard(self, name: str | None = None) -> OodGuard | None:
        """The model's OOD guard, or None when it has no fitted statistics."""
        return self._guards[self.resolve(name)]

    def models(self) -> list[ModelInfo]:
        self._require_ready()
        return list(self._infos.values())

    def model_info(self, name: str | None = None) -> ModelInfo:
        return self._infos[self.resolve(name)]

    def loaded_model(self, name: str | None = None) -> LoadedModel:
        """The underlying model, for add-ons such as explanations."""
        return self._models[self.resolve(name)]

    def resolve(self, name: str | None) -> str:
        """The served model called ``name``, or the default one when ``name`` is empty."""
        self._require_ready()
        name = (name or "").strip().lower() or self._default
        if name not in self._models:
            raise UnknownModelError(
                f"unknown model {name!r}; choose one of: {', '.join(self._models)}"
            )
        return name

    def predict(self, data: bytes, model: str | None = None,
                explain: bool = False) -> Prediction:
        """Classify one uploaded image given as bytes.

        Always: calibrated probabilities, the OOD check (when the model has a
        guard) and the uncertain flag. With ``explain`` also the segmented cells
        and the Grad-CAM overlay and cell-outline PNGs (``extras["explanation"]``);
        segmentation doubles a plain request's time, so it is asked for, not default.
        Raises UnknownModelError, UnsupportedImageError, ImageDecodeError,
        ImageTooLargeError or NotReadyError; never touches the disk.
        """
        name = self.resolve(model)
        loaded = self._models[name]
        guard = self._guards[name]
        start = time.perf_counter()
        image_format = sniff_format(data)
        image = load_image(data)
        decoded = time.perf_counter()
        x = to_model_input(image, loaded.input_size)
        prepared = time.perf_counter()
        if guard is not None:
            # One pass gives both the guard's features and the logits.
            features, logits = guard.forward(x)
        else:
            features, logits = None, loaded.logits(x[None])
        # Exactly LoadedModel.predict: softmax of the temperature-scaled logits.
        probs = softmax(logits.astype(np.float64) / loaded.temperature)[0]
        modelled = time.perf_counter()
        ood = guard.score_features(features, image) if guard is not None else None
        guarded = time.perf_counter()
        cells = segment(image) if explain else None
        segmented = time.perf_counter()
        class_index = int(np.argmax(probs))
        extras: dict[str, Any] = {}
        gradcam_ms = outline_ms = None
        if explain:
            heat = self._cams[name].heatmap(x, class_index)
            # Downscale a big photo once for both pictures (each would do it again).
            shown = downscale(image, DISPLAY_SIDE)
            gradcam_png = overlay_png(shown, heat)
            explained = time.perf_counter()
            extras["explanation"] = {
                "gradcam_class": loaded.class_ids[class_index],
                "gradcam_png": gradcam_png,
                "cells_png": outline_png(shown, cells),
            }
            gradcam_ms = (explained - segmented) * 1000
            outline_ms = (time.perf_counter() - explained) * 1000
        done = time.perf_counter()
        return Prediction(
            class_id=loaded.class_ids[class_index],
            probabilities={c: float(p) for c, p in zip(loaded.class_ids, probs, strict=True)},
            model=self._infos[name],
            timings=Timings(
                decode_ms=(decoded - start) * 1000,
                preprocess_ms=(prepared - decoded) * 1000,
                model_ms=(modelled - prepared) * 1000,
                ood_ms=(guarded - modelled) * 1000 if guard is not None else None,
                segmentation_ms=(segmented - guarded) * 1000 if explain else None,
                gradcam_ms=gradcam_ms,
                outline_ms=outline_ms,
                total_ms=(done - start) * 1000,
            ),
            image_format=image_format,
            image=image,
            model_input=x,
            ood=ood,
            uncertain_below=uncertain_threshold(loaded.metadata),
            cells=cells,
            extras=extras,
        )

    def _require_ready(self) -> None:
        if not self._ready.is_set():
            raise NotReadyError("the models are still loading; try again in a moment")
