"""The registered architectures keep the paper's layouts and output four probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from keras import layers

from training.architectures import (
    ARCHITECTURES,
    CELL_ARCHITECTURES,
    FIELD_ARCHITECTURES,
    Architecture,
    architecture,
)
from training.commands.options import MODEL_CHOICES


@pytest.mark.parametrize("arch", FIELD_ARCHITECTURES.values(), ids=list(FIELD_ARCHITECTURES))
def test_output_is_a_probability_per_class(arch: Architecture) -> None:
    model = arch.build()
    size = arch.input_size
    assert model.input_shape == (None, size, size, 3)
    out = model(np.random.default_rng(0).random((2, size, size, 3), dtype=np.float32)).numpy()
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert model.get_layer("logits").output.shape[-1] == 4
    assert model.name == arch.name
    assert arch.views in (1, 8)
    assert arch.learning_rate > 0


@pytest.mark.parametrize("arch", CELL_ARCHITECTURES.values(), ids=list(CELL_ARCHITECTURES))
def test_a_cell_model_gives_class_logits_and_an_attention_score_per_crop(
    arch: Architecture,
) -> None:
    model = arch.build()
    size = arch.input_size
    assert model.input_shape == (None, size, size, 3)
    logits, scores = model(np.random.default_rng(0).random((3, size, size, 3), dtype=np.float32))
    assert logits.shape == (3, 4)
    assert scores.shape == (3, 1)
    assert model.get_layer("embedding").output.shape[-1] > 0
    assert model.name == arch.name


def test_the_command_line_offers_exactly_the_registry() -> None:
    assert MODEL_CHOICES == (*FIELD_ARCHITECTURES, "all")
    assert set(FIELD_ARCHITECTURES) | set(CELL_ARCHITECTURES) == set(ARCHITECTURES)
    with pytest.raises(ValueError, match="choose one of: lenet, sequential, vggnet, cell_lenet"):
        architecture("resnet")


def _convs(model) -> list[Any]:
    return [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]


def _dropout_rates(model) -> list[float]:
    return [layer.rate for layer in model.layers if isinstance(layer, layers.Dropout)]


def test_dropout_is_the_architectures_unless_overridden() -> None:
    lenet = architecture("lenet")
    assert _dropout_rates(lenet.build()) == [lenet.dropout] * 2
    assert _dropout_rates(lenet.build(dropout=0.5)) == [0.5, 0.5]
    assert f"dropout {lenet.dropout:g}" in lenet.describe()
    assert lenet.describe(dropout=0.5).endswith("dropout 0.5")


def test_lenet_is_lenet5() -> None:
    model = architecture("lenet").build()
    convs = _convs(model)
    assert [(c.filters, c.kernel_size, c.strides) for c in convs] == [
        (6, (5, 5), (1, 1)),
        (16, (5, 5), (1, 1)),
    ]
    pools = [layer for layer in model.layers if isinstance(layer, layers.MaxPooling2D)]
    assert [(p.pool_size, p.strides) for p in pools] == [((2, 2), (2, 2))] * 2
    dense = [layer.units for layer in model.layers if isinstance(layer, layers.Dense)]
    assert dense == [120, 84, 4]
    assert architecture("lenet").input_size == 150


def test_sequential_has_one_convolution() -> None:
    model = architecture("sequential").build()
    assert len(_convs(model)) == 1
    assert _convs(model)[0].kernel_size == (3, 3)
    assert sum(isinstance(layer, layers.MaxPooling2D) for layer in model.layers) == 1


def test_vggnet_keeps_the_vgg16_layout_small_enough() -> None:
    model = architecture("vggnet").build()
    convs = _convs(model)
    assert len(convs) == 13
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(layer, layers.MaxPooling2D) for layer in model.layers) == 5
    widths = [c.filters for c in convs]
    assert widths == sorted(widths)  # filters grow block by block
    assert sum(isinstance(layer, layers.Dense) for layer in model.layers) == 3
    assert model.count_params() * 4 < 40e6  # float32 weights well under 40 MB
