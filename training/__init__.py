"""Training: labelled sources -> sharded TFRecords -> two-stage MobileNetV2 -> export."""

# First, before TensorFlow is imported: its C++ log level is read once, at import.
from crackscan import verbosity  # noqa: F401
