"""Bulk scoring of drone photo archives with Apache Beam: ``python -m pipeline.score``.

Data flows one way, one module per step: ``reading`` (inputs to image bytes) ->
``tiling`` (decode once, cut into model-sized tiles) -> ``inference`` (RunInference) ->
``regroup`` (tiles back to one verdict per image) -> ``sinks`` and ``summary`` (outputs).
``records`` holds the element types and row formats they pass between them.
"""

# First, before TensorFlow or LiteRT is imported: their log level is read once, at import.
from crackscan import verbosity  # noqa: F401
