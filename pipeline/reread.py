"""Photos read again by uri, after scoring: the bytes of the few a later step needs.

Carrying every photo's bytes or pixels to the end of the pipeline would not scale, so the
steps that need a scored photo's pixels again (the review export, the crack masks) read it
again. A plain file is read by itself (:func:`crackscan.sources.read_uri`); the photos of
one archive are read in one pass over it (:func:`crackscan.sources.read_items`): reading a
tar's members one ``read_uri`` at a time would read every member before each, quadratic in
the tar's size. So the callers group their photos by the file that holds them first.
"""
from __future__ import annotations

from typing import Iterator

from crackscan.sources import is_archive, read_items, read_uri, split_uri


def container(uri: str) -> str:
    """The file a photo is read from: itself, or the archive holding it."""
    try:
        return split_uri(uri)[0]
    except ValueError:  # not a crackscan uri: reading it fails, and is reported, alone
        return uri


def photo_bytes(container_uri: str, uris: set[str]) -> Iterator[tuple[str, bytes | Exception]]:
    """Each wanted uri of one file or archive with its bytes, or why they cannot be read."""
    if not is_archive(container_uri):
        for uri in sorted(uris):
            try:
                yield uri, read_uri(uri)
            except Exception as exc:
                yield uri, exc
        return
    pending = set(uris)
    try:
        for item in read_items(container_uri):
            if item.uri in pending:
                pending.discard(item.uri)
                yield item.uri, (item.data if item.data is not None
                                 else OSError(f"unreadable: {item.error}"))
                if not pending:
                    return
    except Exception as exc:
        for uri in sorted(pending):
            yield uri, OSError(f"archive {container_uri} unreadable: {type(exc).__name__}: "
                               f"{exc}")
        return
    for uri in sorted(pending):
        yield uri, FileNotFoundError(f"no longer in {container_uri}")
