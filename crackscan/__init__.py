"""Pieces that the dataset builder and the scoring pipeline share.

Listing sources, reading archives, decoding images and reading the model card are one
implementation each, imported by both `training` and `pipeline`, so the images a model
is trained on and the images it scores are read the same way.
"""
