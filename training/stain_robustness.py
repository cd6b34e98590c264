"""Does a model read the stain or the cells? Greyscale and stain-swapped test photographs.

Neither transform is in any model's training augmentation. *Greyscale* removes colour.
*Stain-swapped* gives each photograph the colour statistics of the other classes (Reinhard
transfer in CIE-LAB: each channel's mean and spread set to the mean of the train split's
photographs of the classes it is not): in this data set the classes differ in stain, so
a model that reads the stain is pushed towards a wrong class. Every photograph goes through
the served path (``InferenceService``): refusals and out-of-distribution flags count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

from app.core.classes import CLASS_IDS
from app.core.imaging import jpeg_bytes
from app.core.preprocessing import load_image
from app.core.service import InferenceService
from training.data import Sample
from training.markdown import table

STATS_PER_CLASS = 40


@dataclass(frozen=True)
class Outcome:
    n: int
    answered: int
    right: int
    silently_wrong: int

    @property
    def accuracy(self) -> float:
        """Right answers over all photographs (refused and uncertain ones are not right)."""
        return self.right / self.n if self.n else 0.0


def lab_statistics(image: Image.Image) -> np.ndarray:
    lab = rgb2lab(np.asarray(image.convert("RGB"), np.float32) / 255)
    return np.concatenate([lab.mean(axis=(0, 1)), lab.std(axis=(0, 1))])


def class_statistics(train: Sequence[Sample]) -> dict[str, np.ndarray]:
    """Mean LAB statistics per class over up to ``STATS_PER_CLASS`` train photographs."""
    out = {}
    for class_id in CLASS_IDS:
        members = [s for s in train if s.class_id == class_id][:STATS_PER_CLASS]
        out[class_id] = np.mean([lab_statistics(load_image(s.path)) for s in members], axis=0)
    return out


def reinhard(image: Image.Image, target: np.ndarray) -> Image.Image:
    """The photograph with its LAB means and spreads set to ``target``'s."""
    lab = rgb2lab(np.asarray(image.convert("RGB"), np.float32) / 255)
    mean, std = lab.mean(axis=(0, 1)), lab.std(axis=(0, 1)) + 1e-6
    moved = (lab - mean) / std * target[3:] + target[:3]
    rgb = lab2rgb(moved)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))


def transforms(
    stats: dict[str, np.ndarray],
) -> dict[str, Callable[[Image.Image, str], Image.Image]]:
    def swapped(image: Image.Image, class_id: str) -> Image.Image:
        others = np.mean([v for c, v in stats.items() if c != class_id], axis=0)
        return reinhard(image, others)

    return {
        "unchanged": lambda image, _c: image,
        "greyscale": lambda image, _c: image.convert("L").convert("RGB"),
        "stain_swapped": swapped,
    }


def measure(
    service: InferenceService,
    test: Sequence[Sample],
    train: Sequence[Sample],
    models: Sequence[str] | None = None,
) -> dict[str, dict[str, Outcome]]:
    """Per model and transform: how many photographs were answered, right, silently wrong."""
    stats = class_statistics(train)
    names = list(models or [card.name for card in service.models()])
    out: dict[str, dict[str, Outcome]] = {name: {} for name in names}
    for kind, fn in transforms(stats).items():
        data = [jpeg_bytes(fn(load_image(s.path), s.class_id), quality=95) for s in test]
        for name in names:
            outcomes = service.classify_many(data, name)
            answered = right = wrong = 0
            for sample, o in zip(test, outcomes, strict=True):
                if isinstance(o, Exception) or o.status in ("uncertain", "out_of_distribution"):
                    continue
                answered += 1
                if o.class_id == sample.class_id:
                    right += 1
                else:
                    wrong += 1
            out[name][kind] = Outcome(len(test), answered, right, wrong)
    return out


def markdown(result: dict[str, dict[str, Outcome]], display: dict[str, str]) -> str:
    kinds = list(next(iter(result.values())))
    rows = [
        [
            display.get(name, name),
            *(
                f"{100 * o.accuracy:.1f}% (answered {100 * o.answered / o.n:.0f}%, "
                f"silently wrong {100 * o.silently_wrong / o.n:.1f}%)"
                for o in (by_kind[k] for k in kinds)
            ),
        ]
        for name, by_kind in result.items()
    ]
    return "\n".join(
        [
            "## Greyscale and stain-swapped photographs",
            "",
            "The test split through the served path after a transform no training used "
            "(`python -m training stain-robustness --data-dir DIR`): *greyscale*; "
            "*stain_swapped*, each photograph given the mean CIE-LAB statistics of the classes "
            "it is not. Accuracy counts every photograph (a refused or uncertain one is not "
            "right); *answered* is the share given a confident answer, *silently wrong* the "
            "share answered confidently and wrongly.",
            "",
            table(["model", *kinds], rows),
            "",
            *_findings(result, display),
        ]
    )


SILENT_TARGET = 0.005


def _findings(result: dict[str, dict[str, Outcome]], display: dict[str, str]) -> list[str]:
    """The sentences under the table: silent errors over the target, sets nobody answers."""
    over = [
        f"{display.get(name, name)} on {kind} ({100 * o.silently_wrong / o.n:.1f}%)"
        for name, by_kind in result.items()
        for kind, o in by_kind.items()
        if o.n and o.silently_wrong / o.n > SILENT_TARGET
    ]
    unanswered = [
        kind
        for kind in next(iter(result.values()))
        if all(by_kind[kind].answered == 0 for by_kind in result.values())
    ]
    lines = []
    if over:
        lines.append(f"Silent errors above the {SILENT_TARGET:.1%} target: {'; '.join(over)}. ✗")
    if unanswered:
        lines.append(
            f"No model answers any {', '.join(unanswered)} photograph: each is refused or "
            "flagged (a cell model finds no violet leukocyte in grey), never answered wrongly."
        )
    return [*(f"{line}\n" for line in lines)]


def write(path: Path, section: str) -> None:
    from training.report import STAIN_HEADING, replace_section

    text = path.read_text() if path.exists() else "# Model report\n"
    path.write_text(replace_section(text, STAIN_HEADING, section))
