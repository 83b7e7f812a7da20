"""Names of the files written per photo (review tiles, crack masks): safe and unique.

Uniqueness comes from a hash of what the file is of (a uri, a uri and a tile): stems repeat
across folders and archives (``a.zip!x.jpg``, ``b.zip!x.jpg``), and uris hold anything a
file name may hold (newlines, ``%``, bytes that are not UTF-8, escaped). The stem before the
hash is the photo's own name with everything but ASCII letters, digits, ``_`` and ``-``
replaced, so a person browsing the files still sees which photo each came from, and the
name is safe on any file system, in any shell and in a gs:// object name.
"""
from __future__ import annotations

import hashlib
import posixpath
import re

from crackscan.sources import split_uri

# Hex digits (64 bits) of the hash in a file name: what makes names unique; the stem before
# them is only there for people.
NAME_DIGEST_HEX = 16
STEM_CHARACTERS = 40
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def photo_stem(uri: str) -> str:
    """The photo's own file name without its suffix, made safe; ``photo`` when nothing of
    it is left."""
    try:
        path, member, _ = split_uri(uri)
        name = posixpath.basename(member if member is not None else path)
    except ValueError:  # not a crackscan uri: the hash alone still names it uniquely
        name = ""
    return _UNSAFE.sub("-", posixpath.splitext(name)[0]).strip("-")[:STEM_CHARACTERS] or "photo"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:NAME_DIGEST_HEX]


def tile_file_name(uri: str, tile: int) -> str:
    """The review export's name of one tile of a photo."""
    key = f"{uri}\n{tile}"
    return f"{photo_stem(uri)}_t{tile}_{digest(key)}.png"


def mask_file_name(uri: str) -> str:
    """The name of a photo's crack mask."""
    return f"{photo_stem(uri)}_{digest(uri)}.png"
