"""The architectures the project trains, registered in one place.

``ARCHITECTURES`` is the registry: the command line's choices, ``--model all``,
the report and the tests all derive from it. To add a model, write its builder
here and add one ``Architecture`` to the registry. A ``"field"`` architecture reads
the whole photograph; a ``"cell"`` one reads one leukocyte crop
(``app.core.cells.crops``) and gives class logits and an attention score, which
``app.core.cells.pooling`` pools into the field's answer.

Keras is imported inside the builders, so reading the registry (the command line's
choices) loads no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from app.core.classes import CLASS_IDS

if TYPE_CHECKING:
    import keras
    from keras import layers

N_CLASSES = len(CLASS_IDS)

Builder = Callable[[int, float], "keras.Model"]
Unit = Literal["field", "cell"]


@dataclass(frozen=True)
class Architecture:
    """One trainable architecture and its training recipe."""

    name: str
    display_name: str
    build_fn: Builder
    input_size: int
    dropout: float
    # ``{dropout:g}`` in the text is filled in with the rate the model is built with.
    description: str
    # The accuracy the reproduced paper (Bhuvanewari S et al., training.report.PAPER) reports.
    paper_accuracy: str | None = None
    learning_rate: float = 1e-3
    # Test-time views the trained model averages (``app.core.orientations``): 1 or 8.
    views: int = 1
    # Overrides of the shared augmentation profile (``training.augment.AUGMENTATION``).
    augmentation: Mapping[str, Any] = field(default_factory=dict)
    unit: Unit = "field"

    def build(self, dropout: float | None = None) -> keras.Model:
        return self.build_fn(self.input_size, self.dropout if dropout is None else dropout)

    def describe(self, dropout: float | None = None) -> str:
        return self.description.format(dropout=self.dropout if dropout is None else dropout)


def _stain_normalisation() -> layers.Layer:
    from app.core.layers import StainNormalization

    # Removes global tint, stain strength, brightness and contrast, which differ
    # between classes in this data set and between labs.
    return StainNormalization(name="stain_norm")


def _conv_bn(filters: int, kernel: int, name: str, momentum: float = 0.99) -> list[layers.Layer]:
    from keras import layers

    # Bias is redundant before batch norm.
    return [
        layers.Conv2D(
            filters,
            kernel,
            padding="valid" if kernel == 5 else "same",
            use_bias=False,
            name=f"{name}_conv",
        ),
        layers.BatchNormalization(momentum=momentum, name=f"{name}_bn"),
        layers.Activation("relu", name=f"{name}_relu"),
    ]


def _classifier_head() -> list[layers.Layer]:
    from keras import layers

    return [
        layers.Dense(N_CLASSES, name="logits"),
        layers.Activation("softmax", dtype="float32", name="probabilities"),
    ]


def build_lenet(input_size: int, dropout: float) -> keras.Sequential:
    """LeNet-5 layout: conv6 5x5, pool, conv16 5x5, pool, dense 120, dense 84, softmax."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((input_size, input_size, 3), name="image"),
            _stain_normalisation(),
            *_conv_bn(6, 5, "c1"),
            layers.MaxPooling2D(2, 2, name="s2"),
            *_conv_bn(16, 5, "c3"),
            layers.MaxPooling2D(2, 2, name="s4"),
            layers.Flatten(name="flatten"),
            layers.Dropout(dropout, name="drop1"),
            layers.Dense(120, activation="relu", name="f5"),
            layers.Dropout(dropout, name="drop2"),
            layers.Dense(84, activation="relu", name="f6"),
            *_classifier_head(),
        ],
        name="lenet",
    )


def build_sequential(input_size: int, dropout: float) -> keras.Sequential:
    """The paper's one-convolution model: conv 3x3, max-pool 2x2, flatten, dense layers."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((input_size, input_size, 3), name="image"),
            _stain_normalisation(),
            *_conv_bn(16, 3, "conv"),
            layers.MaxPooling2D(2, 2, name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dropout(dropout, name="drop1"),
            # Batch norm before the ReLU keeps the wide dense layer's units from dying.
            layers.Dense(64, use_bias=False, name="fc1"),
            layers.BatchNormalization(name="fc1_bn"),
            layers.Activation("relu", name="fc1_relu"),
            layers.Dropout(dropout, name="drop2"),
            *_classifier_head(),
        ],
        name="sequential",
    )


VGG_BLOCKS = (2, 2, 3, 3, 3)
VGG_WIDTHS = (8, 16, 32, 64, 64)


def build_vggnet(input_size: int, dropout: float) -> keras.Sequential:
    """VGG-16 layout (2-2-3-3-3 convs 3x3, 5 pools, 3 dense) at 1/8 of VGG-16's widths."""
    import keras
    from keras import layers

    stack: list[Any] = [
        keras.Input((input_size, input_size, 3), name="image"),
        _stain_normalisation(),
    ]
    for b, (n_convs, width) in enumerate(zip(VGG_BLOCKS, VGG_WIDTHS, strict=True), start=1):
        for c in range(1, n_convs + 1):
            stack += _conv_bn(width, 3, f"block{b}_{c}")
        stack.append(layers.MaxPooling2D(2, 2, name=f"block{b}_pool"))
    stack += [
        layers.Flatten(name="flatten"),
        layers.Dropout(dropout, name="drop1"),
        layers.Dense(128, activation="relu", name="fc1"),
        layers.Dropout(dropout, name="drop2"),
        layers.Dense(64, activation="relu", name="fc2"),
        *_classifier_head(),
    ]
    return keras.Sequential(stack, name="vggnet")


ATTENTION_WIDTH = 32
# Bags of 8 cells make few steps an epoch; the default 0.99 left the running statistics
# of batch norm far behind the weights, and validation answers a single class early on.
CELL_BN_MOMENTUM = 0.9


def _cell_outputs(features: Any, dropout: float) -> tuple[Any, Any]:
    """Class logits and a gated attention score (Ilse et al. 2018) from a cell's features."""
    from keras import layers

    h = layers.Dropout(dropout, name="drop_embedding")(features)
    logits = layers.Dense(N_CLASSES, name="logits")(h)
    hidden = layers.Dense(ATTENTION_WIDTH, activation="tanh", name="attention_v")(h)
    gate = layers.Dense(ATTENTION_WIDTH, activation="sigmoid", name="attention_u")(h)
    gated = layers.Multiply(name="attention_gated")([hidden, gate])
    return logits, layers.Dense(1, name="attention")(gated)


def _stack(x: Any, stack: list[layers.Layer]) -> Any:
    for layer in stack:
        x = layer(x)
    return x


def build_cell_lenet(input_size: int, dropout: float) -> keras.Model:
    """LeNet-5 on one leukocyte crop: conv6 5x5, pool, conv16 5x5, pool, dense 120, 84."""
    import keras
    from keras import layers

    crop = keras.Input((input_size, input_size, 3), name="cell")
    features = _stack(
        crop,
        [
            *_conv_bn(6, 5, "c1", CELL_BN_MOMENTUM),
            layers.MaxPooling2D(2, 2, name="s2"),
            *_conv_bn(16, 5, "c3", CELL_BN_MOMENTUM),
            layers.MaxPooling2D(2, 2, name="s4"),
            layers.Flatten(name="flatten"),
            layers.Dense(120, activation="relu", name="f5"),
            layers.Dense(84, activation="relu", name="embedding"),
        ],
    )
    logits, scores = _cell_outputs(features, dropout)
    return keras.Model(crop, [logits, scores], name="cell_lenet")


CELLNET_WIDTHS = (16, 32, 64, 128)


def build_cellnet(input_size: int, dropout: float) -> keras.Model:
    """Five 3x3 convolutions (a strided first one), three pools, global average pooling."""
    import keras
    from keras import layers

    crop = keras.Input((input_size, input_size, 3), name="cell")
    w1, w2, w3, w4 = CELLNET_WIDTHS
    features = _stack(
        crop,
        [
            layers.Conv2D(w1, 3, strides=2, padding="same", use_bias=False, name="stem_conv"),
            layers.BatchNormalization(momentum=CELL_BN_MOMENTUM, name="stem_bn"),
            layers.Activation("relu", name="stem_relu"),
            *_conv_bn(w2, 3, "b1", CELL_BN_MOMENTUM),
            layers.MaxPooling2D(2, 2, name="b1_pool"),
            *_conv_bn(w3, 3, "b2", CELL_BN_MOMENTUM),
            layers.MaxPooling2D(2, 2, name="b2_pool"),
            *_conv_bn(w4, 3, "b3a", CELL_BN_MOMENTUM),
            *_conv_bn(w4, 3, "b3b", CELL_BN_MOMENTUM),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(64, activation="relu", name="embedding"),
        ],
    )
    logits, scores = _cell_outputs(features, dropout)
    return keras.Model(crop, [logits, scores], name="cellnet")


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            name="lenet",
            display_name="LeNet-5",
            build_fn=build_lenet,
            input_size=150,
            dropout=0.0,
            learning_rate=2e-3,
            paper_accuracy="95.75%",
            description="LeNet-5 layout (conv6 5x5, pool, conv16 5x5, pool, 120, 84) "
            "with stain normalisation, batch norm and dropout {dropout:g}",
        ),
        Architecture(
            name="sequential",
            display_name="Sequential",
            build_fn=build_sequential,
            input_size=128,
            dropout=0.3,
            learning_rate=5e-4,
            views=8,
            paper_accuracy="93%",
            description=(
                "one 3x3 convolution (16 filters), 2x2 max-pool, flatten, dense 64, softmax"
            ),
        ),
        Architecture(
            name="vggnet",
            display_name="VGGNet (VGG-16 layout)",
            build_fn=build_vggnet,
            input_size=224,
            dropout=0.3,
            paper_accuracy="34%",
            augmentation={"saturation": (0.4, 1.6)},
            description="VGG-16 layout: 13 3x3 convolutions in 5 blocks, 5 max-pools, "
            f"3 dense layers; widths {VGG_WIDTHS} instead of (64, 128, 256, "
            "512, 512) and dense 128/64 instead of 4096/4096 so the file "
            "stays small and it trains on 2 CPU cores",
        ),
        Architecture(
            name="cell_lenet",
            display_name="Cell LeNet-5",
            build_fn=build_cell_lenet,
            input_size=64,
            dropout=0.2,
            learning_rate=2e-3,
            unit="cell",
            description="LeNet-5 layout on each leukocyte (64 px, about 22 micrometres, "
            "stain normalised per field), attention pooling over the field's cells, "
            "dropout {dropout:g}",
        ),
        Architecture(
            name="cellnet",
            display_name="CellNet",
            build_fn=build_cellnet,
            input_size=64,
            dropout=0.2,
            learning_rate=2e-3,
            unit="cell",
            description=f"five 3x3 convolutions {CELLNET_WIDTHS} with batch norm and global "
            "average pooling on each leukocyte (64 px, about 22 micrometres), attention "
            "pooling over the field's cells, dropout {dropout:g}",
        ),
    )
}
FIELD_ARCHITECTURES = {n: a for n, a in ARCHITECTURES.items() if a.unit == "field"}
CELL_ARCHITECTURES = {n: a for n, a in ARCHITECTURES.items() if a.unit == "cell"}


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}"
        ) from None
