"""The capture-robustness suite: each set's transform does what its note says, no set
shares a transform with training, and the scores are marked against their targets."""

from __future__ import annotations

import ast
import inspect
import io
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

import training.capture as capture_module
from app.core.scale import measure_cells
from tests.support.images import ImageFactory
from training.augment import AUGMENTATION
from training.capture import (
    CAPTURE_HEADING,
    CAPTURE_NOTES,
    CAPTURES,
    CROSSTALK,
    FLAT_CHROMA,
    FLAT_LUMA,
    PHONE_CHROMA,
    PHONE_FRAME,
    PHONE_LUMA,
    SRGB_TO_XYZ,
    STEEP_CHROMA,
    STEEP_LUMA,
    Outcomes,
    SetScore,
    bgr,
    capture_markdown,
    colour_matrix,
    coverage_limit,
    coverage_target,
    demosaic,
    disc_kernel,
    motion_kernel,
    planck_xy,
    poisson_gaussian,
    resample,
    sensor_noise,
    single_cell,
    to_linear,
    tone_curve,
    white_point_matrix,
    zoom,
)

# Modules whose transforms the models were trained or thresholds fitted with.
TRAINING_MODULES = ("training.augment", "training.cell_mil", "training.perturbations")
SAME_SIZE = 224


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.fixture(scope="module")
def smear() -> Image.Image:
    return ImageFactory.smear((SAME_SIZE, SAME_SIZE), seed=5)


@pytest.fixture(scope="module")
def outputs(smear: Image.Image) -> dict[str, bytes]:
    return {name: capture(smear) for name, capture in CAPTURES.items()}


# --- Every set ----------------------------------------------------------------------------


def test_every_set_yields_a_decodable_image_of_its_size(outputs: dict[str, bytes]) -> None:
    sizes = {name: decoded(data).size for name, data in outputs.items()}
    other = {
        "resample_nearest_0.85": (190, 190),
        "resample_box_0.7": (157, 157),
        "resample_lanczos_1.25": (280, 280),
        "phone_like": PHONE_FRAME,
        "foreign_single_cell": (360, 360),
        "foreign_screenshot": (1280, 800),
    }
    assert {n: s for n, s in sizes.items() if n in other} == other
    assert all(s == (SAME_SIZE, SAME_SIZE) for n, s in sizes.items() if n not in other)


def test_only_the_unperturbed_set_leaves_the_image_as_it_is(
    smear: Image.Image, outputs: dict[str, bytes]
) -> None:
    assert decoded(outputs["unperturbed"]).tobytes() == smear.tobytes()
    original = np.asarray(smear, dtype=np.float64)
    for name, data in outputs.items():
        if name == "unperturbed":
            continue
        image = decoded(data)
        if image.size == smear.size:
            change = np.abs(np.asarray(image, dtype=np.float64) - original).mean()
            assert change > 0.5, name


def test_every_set_says_in_one_line_why_training_lacks_it() -> None:
    assert list(CAPTURE_NOTES) == list(CAPTURES)
    assert all(note and "\n" not in note for note in CAPTURE_NOTES.values())
    assert "unperturbed" in CAPTURES
    assert "phone_like" in CAPTURES
    assert any(name.startswith("foreign_") for name in CAPTURES)


# --- Disjoint from training ---------------------------------------------------------------


def test_the_capture_module_imports_nothing_training_uses_to_transform() -> None:
    tree = ast.parse(Path(inspect.getfile(capture_module)).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not imported & set(TRAINING_MODULES)
    assert not any(name.split(".")[0] == "tensorflow" for name in imported)


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def reachable(roots: list[object]) -> list[object]:
    """Every function, callable object and module a capture can call: closures, defaults
    and the globals its code names, followed transitively (an over-approximation)."""
    seen: dict[int, object] = {}
    stack = list(roots)
    while stack:
        item = stack.pop()
        if id(item) in seen or item is None:
            continue
        seen[id(item)] = item
        if isinstance(item, types.FunctionType):
            stack += [cell.cell_contents for cell in item.__closure__ or ()]
            stack += list(item.__defaults__ or ())
            names = _code_names(item.__code__)
            stack += [
                item.__globals__[n]
                for n in names
                if n in item.__globals__
                and (callable(item.__globals__[n]) or inspect.ismodule(item.__globals__[n]))
            ]
    return list(seen.values())


def test_no_capture_reaches_a_training_transform() -> None:
    found = reachable(list(CAPTURES.values()))
    modules = {getattr(f, "__module__", None) for f in found} | {
        f.__name__ for f in found if inspect.ismodule(f)
    }
    assert not modules & set(TRAINING_MODULES)
    assert "tensorflow" not in {str(m).split(".")[0] for m in modules}
    # The helpers kept for the browser test repeat training's own transforms.
    for helper in ("white_balance", "vignette", "jpeg"):
        assert not any(f is getattr(capture_module, helper) for f in found), helper
    # The walk does follow calls: the noise and phone sets reach their own helpers.
    assert any(f is capture_module.demosaic for f in found)
    assert any(f is capture_module.jpeg_with_tables for f in found)


def test_zoom_sets_lie_outside_training_magnifications() -> None:
    factors = [float(n.split("_")[1]) for n in CAPTURES if n.startswith("zoom_")]
    assert factors
    for f in factors:
        assert f < AUGMENTATION.min_zoom_out or f > 1 / AUGMENTATION.min_crop, f


def _standard_tables(quality: int) -> dict[int, list[int]]:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 64, 200)).save(buffer, format="JPEG", quality=quality)
    quantization = Image.open(buffer).quantization  # type: ignore[attr-defined]
    return {k: list(v) for k, v in quantization.items()}


@pytest.mark.parametrize(
    ("name", "luma", "chroma", "sampling"),
    [
        ("jpeg_flat_444", FLAT_LUMA, FLAT_CHROMA, 0),
        ("jpeg_steep_422", STEEP_LUMA, STEEP_CHROMA, 1),
        ("phone_like", PHONE_LUMA, PHONE_CHROMA, 2),
    ],
)
def test_jpeg_sets_use_their_own_tables_and_subsampling(
    outputs: dict[str, bytes], name: str, luma: list[int], chroma: list[int], sampling: int
) -> None:
    image = Image.open(io.BytesIO(outputs[name]))
    assert image.format == "JPEG"
    tables = {k: list(v) for k, v in image.quantization.items()}  # type: ignore[attr-defined]
    assert tables == {0: luma, 1: chroma}
    assert JpegImagePlugin.get_sampling(image) == sampling
    # No quality of the standard tables (training uses 30-95) gives these.
    assert all(_standard_tables(q)[0] != luma for q in range(1, 101))


def test_webp_and_heic_sets_are_lossy_files_of_their_format(
    smear: Image.Image, outputs: dict[str, bytes]
) -> None:
    webp, heic = outputs["webp_q50"], outputs["heic_q50"]
    assert webp[:4] == b"RIFF"
    assert webp[8:16] == b"WEBPVP8 "  # "VP8 " is lossy, "VP8L" not
    assert heic[4:12] == b"ftypheic"
    for data in (webp, heic):
        difference = np.abs(
            np.asarray(decoded(data), dtype=np.float64) - np.asarray(smear, dtype=np.float64)
        )
        assert 0.3 < difference.mean() < 10


# --- Blur ---------------------------------------------------------------------------------


def _axes_spread(kernel: np.ndarray, angle_degrees: float) -> tuple[float, float]:
    """The kernel's standard deviation along ``angle_degrees`` and across it."""
    yy, xx = np.mgrid[: kernel.shape[0], : kernel.shape[1]].astype(np.float64)
    cy, cx = (kernel * yy).sum(), (kernel * xx).sum()
    a = np.radians(angle_degrees)
    along = (xx - cx) * np.cos(a) - (yy - cy) * np.sin(a)
    across = (xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    return float(np.sqrt((kernel * along**2).sum())), float(np.sqrt((kernel * across**2).sum()))


def test_the_motion_kernel_is_a_streak_not_a_gaussian() -> None:
    kernel = motion_kernel(9, 30)
    assert kernel.sum() == pytest.approx(1.0)
    along, across = _axes_spread(kernel, 30)
    # A uniform streak of length 9 spreads sqrt((9^2 - 1) / 12) = 2.6 px along it.
    assert along == pytest.approx(np.sqrt(80 / 12), rel=0.1)
    assert across < 0.5
    assert along / across > 5


def test_the_defocus_kernel_is_a_flat_disc_with_a_hard_edge() -> None:
    kernel = disc_kernel(2.5)
    r = kernel.shape[0] // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    distance = np.hypot(yy, xx)
    inside = kernel[distance <= 1.8]
    assert inside.max() == pytest.approx(inside.min())  # flat top: a Gaussian falls off
    assert (kernel[distance >= 3.3] == 0).all()  # no tail beyond the rim
    assert kernel.sum() == pytest.approx(1.0)


# --- Sensor noise -------------------------------------------------------------------------


def test_shot_noise_variance_grows_with_brightness() -> None:
    rng = np.random.default_rng(0)
    electrons, read = 400.0, 3.0
    variances = []
    for level in (0.05, 0.2, 0.5, 0.9):
        values = poisson_gaussian(np.full((200, 200), level), electrons, read, rng)
        assert values.mean() == pytest.approx(level, abs=0.005)
        variances.append(values.var() * electrons**2)
        # Poisson: variance in electrons is the signal; plus the read noise's.
        assert variances[-1] == pytest.approx(level * electrons + read**2, rel=0.08)
    assert variances == sorted(variances)
    assert variances[-1] > 10 * variances[0]


def test_demosaicing_shares_the_noise_between_channels_and_neighbours() -> None:
    grey = Image.new("RGB", (128, 128), (150, 150, 150))
    noisy = np.asarray(sensor_noise(grey), dtype=np.float64)[8:-8, 8:-8]
    residual = noisy - noisy.mean(axis=(0, 1))
    r, g, b = (residual[..., c].ravel() for c in range(3))
    # Independent noise per channel and pixel (training's) correlates about 0.
    assert np.corrcoef(r, g)[0, 1] > 0.2
    assert np.corrcoef(g, b)[0, 1] > 0.2
    green = residual[..., 1]
    assert np.corrcoef(green[:, :-1].ravel(), green[:, 1:].ravel())[0, 1] > 0.2
    assert residual.std() > 1.0


def test_demosaicing_a_flat_mosaic_gives_a_flat_image() -> None:
    assert demosaic(np.full((10, 12), 0.4)) == pytest.approx(np.full((10, 12, 3), 0.4))


# --- Colour -------------------------------------------------------------------------------


def test_the_camera_matrix_keeps_greys_and_mixes_colours() -> None:
    assert CROSSTALK.sum(axis=1) == pytest.approx(np.ones(3))
    pixels = np.array([[[200, 200, 200], [90, 90, 90], [120, 60, 160], [200, 120, 130]]])
    out = np.asarray(colour_matrix(CROSSTALK)(Image.fromarray(pixels.astype(np.uint8))))
    out = out.astype(int)
    assert np.abs(out[0, :2] - pixels[0, :2]).max() <= 1
    # Greys unchanged means per-channel gains of 1: only a mixing matrix moves the colours.
    assert np.abs(out[0, 2:] - pixels[0, 2:]).max() > 10


@pytest.mark.parametrize("kelvin", [4000, 10000])
def test_a_white_point_matrix_moves_white_to_the_lamps_colour(kelvin: int) -> None:
    matrix = white_point_matrix(kelvin)
    white = matrix @ np.ones(3)
    assert white.max() == pytest.approx(1.0)
    xyz = SRGB_TO_XYZ @ white
    xy = xyz[:2] / xyz.sum()
    assert xy == pytest.approx(planck_xy(kelvin), abs=0.002)
    off_diagonal = matrix - np.diag(np.diag(matrix))
    assert np.abs(off_diagonal).max() > 0.01  # a full matrix, not channel gains


def test_the_planck_fit_gives_known_chromaticities() -> None:
    assert planck_xy(2856) == pytest.approx((0.4476, 0.4074), abs=0.002)  # illuminant A
    assert planck_xy(6500) == pytest.approx((0.3135, 0.3237), abs=0.002)


def test_colour_matrices_work_in_linear_light() -> None:
    half = colour_matrix(np.eye(3) * 0.5)(Image.new("RGB", (4, 4), (255, 255, 255)))
    # Half the light is sRGB 188, not 128.
    assert np.asarray(half)[0, 0] == pytest.approx([188, 188, 188], abs=1)
    assert to_linear(np.array([188 / 255]))[0] == pytest.approx(0.5, abs=0.005)


def test_the_tone_curve_is_s_shaped_and_monotonic() -> None:
    x = np.linspace(0, 1, 256)
    y = tone_curve(x)
    assert y[0] == 0
    assert y[-1] == pytest.approx(1)
    assert (np.diff(y) > 0).all()
    slopes = np.gradient(y, x)
    assert slopes[128] > 1.1
    assert slopes[5] < 0.7
    assert slopes[-5] < 0.7


# --- Resampling and zoom ------------------------------------------------------------------


def test_nearest_resampling_makes_no_new_colours(smear: Image.Image) -> None:
    out = resample(0.85, Image.Resampling.NEAREST)(smear)
    before = {tuple(p) for p in np.asarray(smear).reshape(-1, 3)}
    after = {tuple(p) for p in np.asarray(out).reshape(-1, 3)}
    assert after <= before
    lanczos = resample(0.85, Image.Resampling.LANCZOS)(smear)
    assert not {tuple(p) for p in np.asarray(lanczos).reshape(-1, 3)} <= before


@pytest.mark.parametrize("name", ["resample_box_0.7", "resample_lanczos_1.25"])
def test_resampling_keeps_the_field(outputs: dict[str, bytes], name: str) -> None:
    before = measure_cells(decoded(outputs["unperturbed"]))
    image = decoded(outputs[name])
    after = measure_cells(image)
    assert before.size_px
    assert after.size_px
    factor = image.width / SAME_SIZE
    assert after.size_px / before.size_px == pytest.approx(factor, rel=0.1)


@pytest.mark.parametrize("factor", [0.6, 0.7, 1.4])
def test_zoom_changes_the_cells_size_by_its_factor(smear: Image.Image, factor: float) -> None:
    before = measure_cells(smear).size_px
    after = measure_cells(zoom(factor)(smear)).size_px
    assert before
    assert after
    assert after / before == pytest.approx(factor, rel=0.12)


def test_zooming_out_tiles_the_margins_rather_than_mirroring(smear: Image.Image) -> None:
    out = np.asarray(zoom(0.6)(smear))
    small = round(SAME_SIZE * 0.6)
    pad = (SAME_SIZE - small) // 2
    # Row pad - 1 is the field's last row (wrapped), not its first (mirrored).
    assert (out[pad - 1] == out[pad + small - 1]).all()
    assert not (out[pad - 1] == out[pad]).all()


# --- The phone and the foreign sets -------------------------------------------------------


def test_the_phone_fills_a_12_mp_frame_with_the_field(outputs: dict[str, bytes]) -> None:
    phone = decoded(outputs["phone_like"])
    assert phone.size == PHONE_FRAME
    assert phone.width * phone.height > 12_000_000
    before = measure_cells(decoded(outputs["unperturbed"])).size_px
    after = measure_cells(phone).size_px
    assert before
    assert after
    assert after / before == pytest.approx(PHONE_FRAME[0] / SAME_SIZE, rel=0.12)


def test_foreign_sets_are_what_they_claim(smear: Image.Image, outputs: dict[str, bytes]) -> None:
    original = np.asarray(smear)
    assert (np.asarray(bgr(smear)) == original[..., ::-1]).all()
    assert (np.asarray(decoded(outputs["foreign_inverted"])) == 255 - original).all()
    cell = np.asarray(single_cell(smear), dtype=np.float64)
    # The synthetic smear's leukocyte is violet (120, 70, 150); red cells are pink.
    assert cell[..., 2].mean() > cell[..., 1].mean() + 20
    shot = np.asarray(decoded(outputs["foreign_screenshot"]))
    assert (shot[:30, :, :] < 80).all()  # a window's title bar
    assert (shot[80 : 80 + 336, 48 : 48 + 336] != 246).any()


# --- Scores and the table -----------------------------------------------------------------


def test_scores_count_refusals_flags_and_silent_errors() -> None:
    o = Outcomes(
        labels=np.array([0, 1, 2, 3, 0]),
        refused=np.array([True, False, False, False, False]),
        ood=np.array([False, True, False, False, False]),
        predicted=np.array([-1, 1, 2, 0, 0]),
        confidence=np.array([0.0, 0.99, 0.95, 0.97, 0.6]),
        probabilities=np.zeros((5, 4)),
    )
    s = SetScore.of(o, uncertain_below=0.9)
    assert s.coverage == pytest.approx(2 / 5)  # images 2 and 3 are answered
    assert s.accuracy == pytest.approx(0.5)
    assert s.silent_errors == pytest.approx(1 / 5)  # image 3: Pro-B called Benign
    assert s.refused == pytest.approx(1 / 5)
    assert s.ood == pytest.approx(1 / 5)
    assert SetScore.of(o, None).coverage == pytest.approx(3 / 5)


def test_targets_hold_on_every_set_and_foreign_sets_are_reversed() -> None:
    assert coverage_target("zoom_1.5") == 0.9
    assert coverage_target("unperturbed") == 0.9
    assert coverage_target("phone_like") == 0.75
    assert coverage_target("foreign_bgr") is None
    assert coverage_limit("foreign_bgr") == 0.05
    assert coverage_limit("sensor_noise") is None


def test_the_table_marks_every_figure_against_its_target() -> None:
    good = SetScore(accuracy=1.0, coverage=0.95, silent_errors=0.0, refused=0.0, ood=0.05)
    poor = SetScore(accuracy=0.9, coverage=0.5, silent_errors=0.02, refused=0.1, ood=0.4)
    flagged = SetScore(accuracy=None, coverage=0.0, silent_errors=0.0, refused=0.2, ood=0.8)
    answered = SetScore(accuracy=1.0, coverage=0.3, silent_errors=0.0, refused=0.0, ood=0.7)
    scores = {
        "m": {"motion_blur": good, "phone_like": poor, "foreign_bgr": flagged},
        "n": {"motion_blur": poor, "phone_like": good, "foreign_bgr": answered},
    }
    text = capture_markdown(scores, {"m": "Model", "n": "Other"}, command="cmd --x")
    assert text.startswith(CAPTURE_HEADING)
    assert "Generated by `cmd --x`" in text
    assert "| Model | motion_blur | 100.0% | 95.0% ✓ | 0.0% ✓ | 0.0% | 5.0% |" in text
    assert "| Model | phone_like | 90.0% | 50.0% ✗ (target 75%) | 2.0% ✗ | 10.0% | 40.0% |" in text
    assert "| Model | foreign_bgr | n/a | 0.0% ✓ | 0.0% ✓ | 20.0% | 80.0% |" in text
    assert "| Other | foreign_bgr | 100.0% | 30.0% ✗ (target at most 5%) |" in text
    assert "| motion_blur | 95.0% ✓ / 0.0% ✓ | 50.0% ✗ / 2.0% ✗ |" in text
    assert "Targets met by 3 of 6 model and set pairs" in text
    assert f"- `motion_blur`: {CAPTURE_NOTES['motion_blur']}" in text


def test_update_report_replaces_only_the_capture_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.report as report

    before = "# Report\n\n## Real captures: old\n\nold table\n\n## Cases: kept\n\ncases\n"
    (tmp_path / "REPORT.md").write_text(before)
    calls: list[str] = []

    def sections(models_dir: Path, samples: object, split: str, command: str) -> tuple[str, str]:
        calls.append(command)
        return "## Real captures: new\n\nnew table\n", "## Cases: recomputed\n"

    monkeypatch.setattr(report, "capture_sections", sections)
    path, captures, cases = report.write_capture_section(tmp_path, [], "the command")
    assert calls == ["the command"]
    assert cases.startswith("## Cases")
    assert path.read_text() == (
        "# Report\n\n## Real captures: new\n\nnew table\n\n## Cases: kept\n\ncases\n"
    )


def test_update_report_is_refused_off_the_test_split() -> None:
    from training.cli import main

    with pytest.raises(SystemExit, match="--split test"):
        main(["capture", "--split", "val", "--update-report"])
