"""Straight joints drawn across training windows, the look-alike intact surveys are full of.

Formwork board edges, panel and tile joints and saw cuts are straight grooves of even width,
often parallel or in a grid. A model trained on crack masks reads them as cracks: intact
walls of boards, panels or tiles from crack sets it never saw were flagged on 8 or 9 of
their 9 tiles. Only one source marks joints in its masks (uav75: 83 training windows), so
this layer draws them into any window, cracked or intact, and leaves the label alone: a
joint neither makes a crack nor hides one. What tells the two apart is left for the model
to learn from the masks' real cracks: a crack wanders, branches and changes width.
"""
from __future__ import annotations

import math

import keras
from keras import ops


def running_bond(rows, cols, angle, spacing, offset, across_offset, across_spacing, bonded):
    """The cross joints' offset at each pixel: shifted by half their spacing in every other
    course between the bed joints (``bonded`` 1), or the same everywhere (0, a square
    grid)."""
    course = ops.floor((cols * ops.cos(angle) + rows * ops.sin(angle) - offset) / spacing)
    return across_offset + bonded * ops.mod(course, 2.0) * across_spacing / 2


class RandomJoints(keras.layers.Layer):
    """Draws, into a share ``rate`` of a batch's 0-255 RGB images, one family of parallel
    straight grooves (a second family across it, making a grid, in ``grid_rate`` of those):
    each darker than the surface by 15-60%, 2-8 px wide with edges 0.5-2 px soft, 40-220 px
    apart at any angle, with a lit edge on one side half of the time. Spacing at most the
    image side keeps at least one joint in the picture. In ``bond_rate`` of the grids the
    cross joints are 1-3 times as far apart and shift by half their spacing from one course
    to the next: the running bond of brickwork and block paving. Identity outside
    training; ``eligible`` (one 0/1 per image) limits the drawing to some images."""

    def __init__(self, rate: float, grid_rate: float = 0.3, seed: int | None = None,
                 bond_rate: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if not all(0 <= share <= 1 for share in (rate, grid_rate, bond_rate)):
            raise ValueError(f"rate {rate}, grid_rate {grid_rate} and bond_rate {bond_rate} "
                             f"must lie in 0-1")
        self.rate = rate
        self.grid_rate = grid_rate
        self.bond_rate = bond_rate
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def _uniform(self, batch, low: float, high: float):
        return keras.random.uniform((batch, 1, 1), low, high, seed=self.generator)

    def _grooves(self, rows, cols, angle, spacing, offset, width, soft, lit):
        """Darkening (0-1) at each pixel from one family of parallel joints, and the
        lighting of the lit edge beside each joint."""
        across = cols * ops.cos(angle) + rows * ops.sin(angle) - offset
        signed = ops.mod(across + spacing / 2, spacing) - spacing / 2
        groove = ops.clip((width / 2 - ops.abs(signed)) / soft + 0.5, 0.0, 1.0)
        edge = ops.clip(1.0 - ops.abs(signed - width) / (width / 2), 0.0, 1.0) * lit
        return groove, edge

    def call(self, images, training: bool = True, eligible=None):
        if not training or self.rate == 0:
            return images
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        rows = ops.cast(ops.reshape(ops.arange(height), (1, -1, 1)), images.dtype)
        cols = ops.cast(ops.reshape(ops.arange(width), (1, 1, -1)), images.dtype)
        angle = self._uniform(batch, 0.0, math.pi)
        spacing = self._uniform(batch, 40.0, 220.0)
        groove_width = self._uniform(batch, 2.0, 8.0)
        soft = self._uniform(batch, 0.5, 2.0)
        lit = ops.cast(self._uniform(batch, 0.0, 1.0) < 0.5, images.dtype) * self._uniform(
            batch, 0.1, 0.4)
        offset = self._uniform(batch, 0.0, 1.0) * spacing
        groove, edge = self._grooves(rows, cols, angle, spacing, offset,
                                     groove_width, soft, lit)
        grid = ops.cast(self._uniform(batch, 0.0, 1.0) < self.grid_rate, images.dtype)
        across_offset = self._uniform(batch, 0.0, 1.0) * spacing
        depth = self._uniform(batch, 0.15, 0.6)
        drawn = ops.cast(self._uniform(batch, 0.0, 1.0) < self.rate, images.dtype)
        bonded = ops.cast(self._uniform(batch, 0.0, 1.0) < self.bond_rate, images.dtype)
        across_spacing = spacing * (1 + bonded * self._uniform(batch, 0.0, 2.0))
        across_offset = running_bond(rows, cols, angle, spacing, offset, across_offset,
                                     across_spacing, bonded)
        across_groove, across_edge = self._grooves(
            rows, cols, angle + math.pi / 2, across_spacing, across_offset, groove_width,
            soft, lit)
        groove = ops.maximum(groove, across_groove * grid)
        edge = ops.maximum(edge, across_edge * grid) * (1 - groove)
        if eligible is not None:
            drawn = drawn * ops.reshape(ops.cast(eligible, images.dtype), (-1, 1, 1))
        darkening = ops.expand_dims(drawn * depth * groove, -1)
        lighting = ops.expand_dims(drawn * edge, -1)
        return ops.clip(images * (1 - darkening) + (255.0 - images) * lighting, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "grid_rate": self.grid_rate,
                "bond_rate": self.bond_rate, "seed": self.seed}
