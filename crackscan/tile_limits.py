"""How many tiles one image may cost: a bound checked once its tile plan is known.

Decoded pixels are bounded by ``--max-pixels``, but tiles are counted on the canvas an
image is cut from, and an image narrower than a tile is first stretched until its short
side fills one. A 1x2000 PNG of 720 bytes becomes a 227x454000 canvas and 2,671 tiles of
nothing: the cost of a 60-megapixel photo. So an image that needs more than one tile may be
stretched by at most ``MAX_STRETCH``, and no image may need more than ``max_tiles`` tiles
(which also catches a ``--tile-stride`` far below the tile size).
"""
from __future__ import annotations

# A 57-pixel short side fills a 227-pixel tile at 4x; narrower strips that also need more
# than one tile hold too little of a surface to judge, at a cost that grows as they narrow.
MAX_STRETCH = 4
# Above any real photo at the default stride (a 120-megapixel image, the default pixel
# limit, is about 4,200 tiles of 227 px; a 4800x6000 photo is 5,561 tiles of 96 px).
DEFAULT_MAX_TILES = 10_000


class TileLimitError(ValueError):
    """An image whose tiles would cost more than one input may; the message says why."""


def check_tile_count(width: int, height: int, tiles: int, tile_size: int,
                     max_tiles: int = DEFAULT_MAX_TILES) -> None:
    """Raises :class:`TileLimitError` when a ``width`` x ``height`` image cut into ``tiles``
    tiles of ``tile_size`` pixels is over either bound."""
    short, long = sorted((width, height))
    if short < tile_size < long and short * MAX_STRETCH < tile_size:
        raise TileLimitError(
            f"{width}x{height} image is a strip {short} pixels wide: scoring it would stretch "
            f"it {tile_size / short:.0f}x into {tiles} tiles of {tile_size} pixels; an image "
            f"that needs more than one tile must be at least {-(-tile_size // MAX_STRETCH)} "
            f"pixels on its short side")
    if tiles > max_tiles:
        raise TileLimitError(f"{width}x{height} image would be cut into {tiles} tiles, over "
                             f"the {max_tiles}-tile limit for one image")
