"""Training: labelled folder archive -> sharded TFRecords -> two-stage MobileNetV2 -> export."""
