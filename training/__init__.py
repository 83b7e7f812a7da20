"""Training: labelled sources -> sharded TFRecords -> two-stage MobileNetV2 -> export."""
