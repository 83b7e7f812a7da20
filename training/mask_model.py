"""The crack-mask model: a frozen MobileNetV2 encoder and a light U-Net decoder.

Why this shape, on a CPU budget: the encoder is a copy of the classifier's pretrained
backbone, frozen and cut after ``block_12_add`` (stride 16), so its skip features can be
computed once per training window and cached (:mod:`training.mask_features`), and only the
decoder trains, on the cache: an epoch costs the decoder's passes, not the backbone's. The
skips are the narrow block outputs at strides 2, 4, 8 and 16 (16, 24, 32 and 96 channels)
rather than the wide expansions (96-576), which keeps the cache at 0.64 MB a window in
float16. Cracks are 1-20 px wide, so the decoder climbs back to full resolution, where a
small convolution of the image itself supplies the last pixel of detail; separable
convolutions keep the full-resolution stages cheap.

The exported model takes what the classifier's takes: 0-255 RGB tiles of ``tile_size``,
scaled inside, and gives each pixel's crack probability (sigmoid), shape ``(N, S, S, 1)``.
"""
from __future__ import annotations

import keras

from training.model import backbone

# (layer of keras.applications.MobileNetV2, stride): the decoder's skip features.
SKIPS = (("expanded_conv_project_BN", 2), ("block_2_add", 4), ("block_5_add", 8),
         ("block_12_add", 16))
# Decoder widths from stride 16 up to the full resolution.
DECODER_FILTERS = (128, 128, 64, 32, 16)
BACKBONE_NAME = "MobileNetV2 (alpha 1.0), frozen, cut after block_12_add"


def encoder(tile_size: int, weights: str) -> keras.Model:
    """Scaled image (-1..1) -> the skip features, strides 2 to 16; frozen, batch norm in
    inference mode (the classifier's pretrained statistics)."""
    base = backbone(tile_size, weights)
    base.trainable = False
    return keras.Model(base.input, [base.get_layer(name).output for name, _ in SKIPS],
                       name="mask_encoder")


def feature_shapes(tile_size: int) -> list[tuple[int, int, int]]:
    """The shape of each skip feature of one tile, as :func:`encoder` gives them."""
    channels = (16, 24, 32, 96)
    return [(tile_size // stride, tile_size // stride, depth)
            for (_, stride), depth in zip(SKIPS, channels)]


def _separable(x, filters: int, name: str):
    return keras.layers.SeparableConv2D(filters, 3, padding="same", activation="relu",
                                        name=name)(x)


def _up(x, name: str):
    return keras.layers.UpSampling2D(2, interpolation="bilinear", name=name)(x)


def decoder(tile_size: int) -> keras.Model:
    """[0-255 image, skip features at strides 2, 4, 8, 16] -> crack probability per pixel."""
    image = keras.Input((tile_size, tile_size, 3), name="image")
    skips = [keras.Input(shape, name=f"skip_{stride}")
             for shape, (_, stride) in zip(feature_shapes(tile_size), SKIPS)]
    f2, f4, f8, f16 = skips
    x = keras.layers.Conv2D(DECODER_FILTERS[0], 1, activation="relu", name="bottom")(f16)
    x = keras.layers.Concatenate(name="cat_8")([_up(x, "up_8"), f8])
    x = _separable(x, DECODER_FILTERS[1], "dec_8a")
    x = _separable(x, DECODER_FILTERS[1], "dec_8b")
    x = keras.layers.Concatenate(name="cat_4")([_up(x, "up_4"), f4])
    x = _separable(x, DECODER_FILTERS[2], "dec_4a")
    x = _separable(x, DECODER_FILTERS[2], "dec_4b")
    x = keras.layers.Concatenate(name="cat_2")([_up(x, "up_2"), f2])
    x = _separable(x, DECODER_FILTERS[3], "dec_2")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="stem_scale")(image)
    stem = keras.layers.Conv2D(DECODER_FILTERS[4], 3, padding="same", activation="relu",
                               name="stem")(scaled)
    x = keras.layers.Concatenate(name="cat_1")([_up(x, "up_1"), stem])
    x = _separable(x, DECODER_FILTERS[4], "dec_1")
    crack = keras.layers.Conv2D(1, 1, activation="sigmoid", name="crack")(x)
    return keras.Model([image, *skips], crack, name="mask_decoder")


def full_model(encoder_model: keras.Model, decoder_model: keras.Model,
               tile_size: int) -> keras.Model:
    """0-255 RGB tiles -> per-pixel crack probability: the model that is exported."""
    image = keras.Input((tile_size, tile_size, 3), name="image")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="mobilenet_v2_scale")(image)
    features = encoder_model(scaled, training=False)
    return keras.Model(image, decoder_model([image, *features]), name="crackscan_mask")


@keras.saving.register_keras_serializable(package="crackscan")
def bce_dice_loss(y_true, y_pred):
    """Binary cross-entropy plus soft Dice over the batch. Crack pixels are 1-2% of a
    window: cross-entropy alone is content to predict background everywhere, and Dice,
    which counts only the crack pixels, is not. Registered, because the saved model keeps
    the decoder's training configuration and must load without it being passed."""
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    bce = keras.ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
    overlap = keras.ops.sum(y_true * y_pred)
    dice = 1.0 - (2.0 * overlap + 1.0) / (keras.ops.sum(y_true) + keras.ops.sum(y_pred) + 1.0)
    return bce + dice


def compile_decoder(model: keras.Model, learning_rate: float) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=bce_dice_loss)
