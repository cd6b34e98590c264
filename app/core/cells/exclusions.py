"""Why a found object is not read as a leukocyte, in words a clinician reads.

Apart from ``detect`` so pages and records name the reasons without its image libraries.
"""

from __future__ import annotations

from typing import Literal

Exclusion = Literal["border", "scale_bar", "too_small", "clump"]

EXCLUSION_REASONS: dict[str, str] = {
    "border": "cut by the edge of the photograph",
    "scale_bar": "in the scale-bar corner",
    "too_small": "too small for a leukocyte (platelet or debris)",
    "clump": "too large or ragged for one leukocyte (a clump, or cells overlapping)",
}
