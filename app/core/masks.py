"""Boolean masks on OpenCV: the few operations the per-field image work needs.

Each gives what ``scipy.ndimage`` gave for the same call (the tests compare them): a
3x3 cross for opening, 4-connected objects and holes, exact Euclidean, taxicab and
chessboard distances, with nothing beyond the image's edge counted as background.
"""

from __future__ import annotations

import cv2
import numpy as np

# The app runs a thread per core for per-image work: OpenCV's own threads would only contend.
cv2.setNumThreads(1)

CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def as_u8(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as OpenCV's 0/1 bytes (a view, no copy)."""
    return np.ascontiguousarray(mask).view(np.uint8)


def opening(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``ndi.binary_opening(mask)``: erosion with nothing outside the image, then dilation."""
    u8 = as_u8(mask)
    eroded = cv2.erode(
        u8, CROSS, iterations=iterations, borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    return cv2.dilate(eroded, CROSS, iterations=iterations).view(bool)


def erosion(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``ndi.binary_erosion(mask, cross, iterations, border_value=0)``."""
    u8 = as_u8(mask)
    out = cv2.erode(u8, CROSS, iterations=iterations, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.view(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndi.binary_fill_holes(mask)``: background not 4-connected to the edge is filled."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    # Flood the outside from a corner of the padding; what it does not reach is mask or hole.
    cv2.floodFill(padded, None, (0, 0), 2, flags=4)
    return np.asarray(padded[1:-1, 1:-1] != 2)


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndi.label(mask)``: 4-connected objects numbered from 1 in raster order, and how many."""
    n, labels = cv2.connectedComponents(as_u8(mask), connectivity=4, ltype=cv2.CV_32S)
    return labels, n - 1


def without_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """The mask less its 4-connected objects of fewer than ``min_px`` pixels."""
    # Areas by counting labels: OpenCV's statistics of every object cost four times more.
    labels, n = label(mask)
    if n < 1:
        return mask
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= min_px
    keep[0] = False
    return np.asarray(keep.take(labels))


def euclidean_distance(mask: np.ndarray) -> np.ndarray:
    """``ndi.distance_transform_edt(mask)`` as float32: exact distances to the background."""
    distance = cv2.distanceTransform(as_u8(mask), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # OpenCV's square root is approximate; squared distances are whole numbers, so equal
    # distances (the watershed's ties) become equal again.
    squared = np.rint(cv2.multiply(distance, distance))
    return np.sqrt(squared, out=squared)


def taxicab_chessboard_mean(mask: np.ndarray) -> np.ndarray:
    """The mean of the taxicab and chessboard distances to the background (float32)."""
    u8 = as_u8(mask)
    taxicab = cv2.distanceTransform(u8, cv2.DIST_L1, 3)
    chessboard = cv2.distanceTransform(u8, cv2.DIST_C, 3)
    return cv2.addWeighted(taxicab, 0.5, chessboard, 0.5, 0.0)
