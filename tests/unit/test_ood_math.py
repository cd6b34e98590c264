"""The OOD guard's and the "uncertain" rule's maths, and the foreign set."""

from __future__ import annotations

import numpy as np

from app.core.guards.image_stats import image_statistics
from app.core.guards.ood import min_mahalanobis
from app.core.guards.uncertainty import is_uncertain
from training.foreign import SYNTHETIC_KINDS, foreign_set
from training.ood import fit_class_gaussians, ledoit_wolf
from training.uncertain import choose_uncertain_below

# --- the uncertain rule ------------------------------------------------------------------


def test_is_uncertain_compares_top_probability_with_threshold() -> None:
    assert is_uncertain(np.array([0.40, 0.30, 0.20, 0.10]), 0.6)
    assert not is_uncertain(np.array([0.70, 0.10, 0.10, 0.10]), 0.6)
    assert not is_uncertain(np.array([0.70, 0.10, 0.10, 0.10]), 0.0)
    assert not is_uncertain(np.array([0.25, 0.25, 0.25, 0.25]), None)  # no threshold set


def test_uncertain_below_splits_where_local_accuracy_drops_under_target() -> None:
    # 40 predictions at 0.3-0.5 confidence, half right; 160 at 0.8-1.0, all right.
    conf = np.r_[np.linspace(0.3, 0.5, 40), np.linspace(0.8, 1.0, 160)]
    correct = np.r_[np.arange(40) % 2 == 0, np.ones(160, bool)]
    c = choose_uncertain_below(conf, correct, target=0.8, window=20)
    assert 0.5 < c < 0.85
    assert correct[conf >= c].mean() >= 0.8
    # The 20 predictions just below c are right less than 80% of the time.
    below = np.sort(conf[conf < c])[-20:]
    assert correct[np.isin(conf, below)].mean() < 0.8


def test_many_right_answers_at_low_confidence_do_not_hide_a_wrong_band() -> None:
    # Low band all right, a band at 0.7-0.8 mostly wrong, high band all right.
    conf = np.r_[np.linspace(0.3, 0.6, 100), np.linspace(0.7, 0.8, 20), np.linspace(0.9, 1, 80)]
    correct = np.r_[np.ones(100, bool), np.arange(20) % 4 == 0, np.ones(80, bool)]
    c = choose_uncertain_below(conf, correct, target=0.8, window=20)
    assert (conf[100:120] < c).all()  # the whole wrong band is uncertain
    assert (conf[120:] >= c).mean() > 0.75  # most of the reliable band is not


def test_uncertain_below_is_zero_for_a_reliable_model_and_one_for_a_useless_one() -> None:
    conf = np.linspace(0.3, 1.0, 100)
    assert choose_uncertain_below(conf, np.ones(100, bool)) == 0.0
    assert choose_uncertain_below(conf, np.zeros(100, bool)) == 1.0


# --- the Gaussian fitting ----------------------------------------------------------------


def test_ledoit_wolf_shrinks_little_with_many_samples_and_more_with_few() -> None:
    rng = np.random.default_rng(0)
    cov = np.diag([4.0, 1.0, 0.25, 0.1])
    many = rng.multivariate_normal(np.zeros(4), cov, 20000)
    est, shrink_many = ledoit_wolf(many - many.mean(0))
    assert np.allclose(est, cov, atol=0.1)
    few = many[:6]
    _, shrink_few = ledoit_wolf(few - few.mean(0))
    assert 0 <= shrink_many < shrink_few <= 1


def test_class_gaussians_give_small_distance_to_own_class_and_large_far_away() -> None:
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    y = np.repeat([0, 1], 500)
    x = centres[y] + rng.normal(0, 1, (1000, 2))
    means, precision, _ = fit_class_gaussians(x, y, 2)
    assert np.allclose(means, centres, atol=0.2)
    d_in = min_mahalanobis(np.array([[10.2, 0.1], [0.3, -0.2]]), means, precision)
    d_out = min_mahalanobis(np.array([[5.0, 8.0]]), means, precision)
    assert d_in.max() < 1.0
    assert d_out[0] > 50


def test_min_mahalanobis_is_the_definition_to_rounding() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(84, 84))
    precision = a @ a.T
    means = rng.normal(size=(4, 84))
    v = rng.normal(size=(5, 84))
    expected = [min((x - m) @ precision @ (x - m) for m in means) for x in v]
    assert np.allclose(min_mahalanobis(v, means, precision), expected, rtol=1e-12, atol=0)
    # One row as a guard scores a single photograph.
    assert min_mahalanobis(v[0], means, precision).shape == (1,)


def test_image_statistics_are_finite_for_blank_and_noisy_images() -> None:
    for arr in (
        np.zeros((224, 224, 3)),
        np.ones((224, 224, 3)),
        np.random.default_rng(2).random((224, 224, 3)),
    ):
        assert np.isfinite(image_statistics(arr)).all()


# --- the foreign set ---------------------------------------------------------------------


def test_foreign_set_is_deterministic_and_covers_synthetic_kinds() -> None:
    a, b = foreign_set(seed=3), foreign_set(seed=3)
    assert len(a) >= 60
    assert {f.kind for f in a} == set(SYNTHETIC_KINDS)
    assert all(
        np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, b, strict=True)
    )
    assert all(f.image.mode == "RGB" for f in a)
