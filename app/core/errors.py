"""Errors a request can cause: the base every layer refuses a request with, and the
classifier's own.

Each carries the HTTP status and the stable error code the web layer answers
with (the "API errors as JSON" pattern of the Flask documentation), so the
mapping lives with the error and not in a table elsewhere. ``RequestRefusedError``
is the base of every such error (the classifier's, and those of accounts, cases and
uploads); ``AnalysisRefusedError`` is the base of the classifier's alone.
"""

from __future__ import annotations

from app.core.formats import FORMAT_NAMES


class RequestRefusedError(Exception):
    """Base of every error a request can cause; ``message`` is safe to show to the user."""

    status: int = 400
    code: str = "bad_request"

    @property
    def message(self) -> str:
        return str(self)


class AnalysisRefusedError(RequestRefusedError):
    """The classifier cannot answer: the image cannot be read or prepared, or the model
    asked for is unknown or not ready."""


class UnsupportedImageError(AnalysisRefusedError):
    """The upload is not one of the accepted image formats (decided from its content)."""

    status = 415
    code = "unsupported_media_type"


class ImageDecodeError(AnalysisRefusedError):
    """The bytes are not a complete image Pillow can decode."""

    status = 422
    code = "undecodable_image"

    @property
    def message(self) -> str:
        return f"The image could not be decoded ({self}). Upload a complete {FORMAT_NAMES} file."


class ImageTooLargeError(AnalysisRefusedError):
    """The image has more pixels than the decoder accepts."""

    status = 413
    code = "image_too_large"

    @property
    def message(self) -> str:
        return f"The image has too many pixels: {str(self).rstrip('.')}."


class CaptureError(AnalysisRefusedError):
    """The photograph cannot be analysed as it was taken; ``fix`` says how to take it again."""

    status = 422
    code = "unusable_capture"

    def __init__(self, reason: str, fix: str, code: str | None = None) -> None:
        super().__init__(f"{reason}: {fix}")
        self.reason = reason
        self.fix = fix
        if code is not None:
            self.code = code

    def __reduce__(self) -> tuple[type[CaptureError], tuple[str, str, str | None]]:
        # Sent back from an image process: rebuilt from its own arguments, not its message.
        return type(self), (self.reason, self.fix, self.__dict__.get("code"))

    @property
    def message(self) -> str:
        text = str(self)
        return f"{text[0].upper()}{text[1:]}."


class NoCellsError(AnalysisRefusedError):
    """The photograph holds no whole leukocyte for a cell model to read."""

    status = 422
    code = "no_cells"

    @property
    def message(self) -> str:
        return (
            "No whole white cell was found in this photograph, so the cell model has nothing "
            f"to read ({self}). Photograph a field with at least one leukocyte away from the edge."
        )


class UnknownModelError(AnalysisRefusedError):
    """The requested model is not served by this process."""

    status = 400
    code = "unknown_model"


class NotReadyError(AnalysisRefusedError):
    """Models are not loaded and warmed up yet."""

    status = 503
    code = "not_ready"


class NoModelsError(RuntimeError):
    """The models folder holds no usable model; the service refuses to start."""
