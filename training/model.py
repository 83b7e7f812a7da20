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

import keras

WEIGHT_CHOICES = ("imagenet", "none")
# The layer that tells a mirror-averaged model from a one-pass one.
MIRROR_AVERAGE_LAYER = "mirror_average"


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


def with_mirror_average(model: keras.Model) -> keras.Model:
    """The trained model scoring each image and its left-right mirror image, and
    averaging the two: one number per image, the same for a photo and its mirror image.

    Training augments with flips, yet one pass still ranks a crack differently from its
    mirror image. On the field data's validation windows the average ranked uavcrack's
    better (ROC AUC 0.979 to 0.984) and lowered the log loss (0.122 to 0.115). It is inside
    the exported model, so the threshold chosen on validation, every figure of the card and
    every scorer see the same averaged probability; it costs a second pass per tile.
    """
    image = keras.Input(shape=(None, None, 3), name="image")
    mirrored = keras.ops.flip(image, axis=2)
    averaged = keras.layers.Average(name=MIRROR_AVERAGE_LAYER)([model(image), model(mirrored)])
    return keras.Model(image, averaged, name=f"{model.name}_mirror_average")


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
