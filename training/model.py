"""The two-stage MobileNetV2 transfer model, with its preprocessing inside.

The model takes plain 0-255 RGB pixels of any size and resizes and scales them itself, so
every caller (evaluation, the scoring pipeline, a user with a NumPy array) feeds the same
thing and no caller can forget MobileNetV2's [-1, 1] scaling.

Batch normalisation stays in inference mode in both stages: the backbone is called with
``training=False`` and, when its top is unfrozen, every BatchNormalization layer is kept
non-trainable. Fine-tuning with BN statistics updated from small batches of concrete
photos is what made the plain Keras recipe lose accuracy in stage 2.
"""
from __future__ import annotations

import os
from typing import Any

import keras

from crackscan.cascade import FLIP_VIEWS

WEIGHT_CHOICES = ("imagenet", "none")
# The layer that tells a flip-averaged model from a one-pass one.
FLIP_AVERAGE_LAYER = "flip_average"
# What a model card's output says each average's probabilities are.
FLIP_AVERAGE_OUTPUT = {
    "mirror": "the mean of the image's and its left-right mirror image's",
    "flips": "the mean of the image's, its left-right and upside-down mirror images' and its "
             "half turn's",
}


def backbone(image_size: int, weights: str) -> keras.Model:
    """MobileNetV2 without its top: ImageNet download, a local weights file, or random."""
    shape = (image_size, image_size, 3)
    if weights == "imagenet":
        return keras.applications.MobileNetV2(input_shape=shape, include_top=False,
                                              weights="imagenet")
    base = keras.applications.MobileNetV2(input_shape=shape, include_top=False, weights=None)
    if weights != "none":
        if not os.path.exists(weights):
            raise FileNotFoundError(f"--weights {weights}: no such weights file "
                                    f"(use 'imagenet', 'none' or a .weights.h5 path)")
        base.load_weights(weights)
    return base


def build(image_size: int = 224, weights: str = "imagenet", dropout: float = 0.2,
          num_classes: int = 2) -> tuple[keras.Model, keras.Model]:
    """The full model and its backbone (kept so the stages can (un)freeze it)."""
    base = backbone(image_size, weights)
    from_scratch = weights == "none"
    base.trainable = from_scratch  # Nothing pretrained to protect: train it all.
    if from_scratch:
        # Keras' 0.999 momentum needs thousands of steps before the moving statistics
        # match the data; a short from-scratch run would evaluate on untrained ones.
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = keras.layers.Resizing(image_size, image_size, interpolation="bilinear",
                              name="resize")(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="mobilenet_v2_scale")(x)
    # Pretrained: batch norm in inference mode for good. From scratch: it must learn.
    x = base(x, training=None if from_scratch else False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="crackscan_mobilenet_v2"), base


def with_flip_average(model: keras.Model, views: str = "mirror") -> keras.Model:
    """The trained model scoring each image flipped as ``FLIP_VIEWS[views]`` says, and
    averaging: one number per image, the same for a photo and any of its flips.

    Training augments with flips, yet one pass still ranks a crack differently from its
    mirror image. On the field data's validation windows the mirror average ranked
    uavcrack's better for the model shipped before (ROC AUC 0.979 to 0.984); for the
    eight-view student the four flips did (0.964 to 0.967; the mirror alone, the four
    quarter turns and all eight orientations 0.961 to 0.964). Flips keep the pixel grid's
    rows and columns, where quarter turns swap them. It is inside the exported model, so the
    threshold chosen on validation, every figure of the card and every scorer see the same
    averaged probability; each view costs one more pass per tile.
    """
    image = keras.Input(shape=(None, None, 3), name="image")
    averaged = keras.layers.Average(name=FLIP_AVERAGE_LAYER)(_scored_views(model, image, views))
    return keras.Model(image, averaged, name=f"{model.name}_{views}_average")


def one_pass(model: keras.Model) -> keras.Model:
    """The one-pass model inside a flip-averaged one (:func:`with_flip_average`), or
    ``model`` itself when it is one pass."""
    if not any(layer.name == FLIP_AVERAGE_LAYER for layer in model.layers):
        return model
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(inner) != 1:
        raise ValueError(f"{model.name}: a flip average must hold one model, not "
                         f"{len(inner)}")
    return inner[0]


def with_views(model: keras.Model, views: str) -> keras.Model:
    """The trained model's outputs for each of ``FLIP_VIEWS[views]`` stacked, shape
    ``(batch, views, classes)``: one evaluation pass gives both the one-pass probabilities
    (the first view) and the flip average a cascade needs, at the average's cost."""
    image = keras.Input(shape=(None, None, 3), name="image")
    return keras.Model(image, keras.ops.stack(_scored_views(model, image, views), axis=1),
                       name=f"{model.name}_{views}")


def _scored_views(model: keras.Model, image: Any, views: str) -> list[Any]:
    """The model's output on each view of the symbolic ``image``, in ``FLIP_VIEWS`` order."""
    scored = []
    for axes in FLIP_VIEWS[views]:
        view = image
        for axis in axes:
            view = keras.ops.flip(view, axis=axis)
        scored.append(model(view))
    return scored


def unfreeze_top(base: keras.Model, layers: int) -> int:
    """Make the top ``layers`` of the backbone trainable, BN excluded; returns how many."""
    base.trainable = True
    cut = max(len(base.layers) - layers, 0)
    unfrozen = 0
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= cut and not isinstance(
            layer, keras.layers.BatchNormalization)
        unfrozen += layer.trainable and bool(layer.weights)
    return unfrozen


def compile_model(model: keras.Model, learning_rate: float,
                  ema_momentum: float | None = None, soft_targets: bool = False) -> None:
    """Adam, optionally keeping an exponential moving average of the weights; the
    cross-entropy takes class indices, or with ``soft_targets`` a probability per class
    (a student's blend of label and teachers, :mod:`training.teachers`).

    The average (Polyak averaging) is what the rerun of the shipped recipe lacked: its
    stage-2 validation loss jumped from 0.192 to 0.350 within one epoch, so which weights
    early stopping kept depended on where the last steps happened to land.
    """
    optimizer = (keras.optimizers.Adam(learning_rate) if ema_momentum is None else
                 keras.optimizers.Adam(learning_rate, use_ema=True, ema_momentum=ema_momentum))
    if soft_targets:
        loss = keras.losses.CategoricalCrossentropy()
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer, loss=loss, weighted_metrics=[accuracy])
