"""The two classes and their indices, as every part of the product names them: folder names
of a labelled set, record labels, the model's output order and the card's class names."""
from __future__ import annotations

CLASS_NAMES = ("Negative", "Positive")
NEGATIVE, POSITIVE = 0, 1
# A window of a mask source that its labelling rule leaves out of training (a crack near its
# border only); it stays in validation and test records so that photos are judged whole.
EXCLUDED = -1
