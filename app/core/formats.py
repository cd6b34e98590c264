"""The image formats accepted from uploads, and how to recognise them from their first bytes."""

from __future__ import annotations

# Formats accepted from uploads; anything else Pillow could read is refused (415).
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "HEIF")
FORMAT_NAMES = "JPEG, PNG, TIFF, BMP, GIF (first frame), WebP or HEIC"
# A file that starts like an accepted image but does not open is damaged (422), not foreign (415).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
# ISO base media brands of HEIC/HEIF still images (phones write "heic").
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1")


def claimed_format(data: bytes) -> str | None:
    """The accepted format whose signature ``data`` starts with, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)
