"""Turn user-given inputs (folders, globs, files, archives; local or ``gs://``) into items.

An *item* is one input image candidate: a plain file, or one member of a ``.zip`` /
``.tar`` / ``.tar.gz`` archive, named ``ARCHIVE!member/path``. Everything goes through
Beam's ``FileSystems`` so any file system Beam knows (local, ``gs://``, ...) works, and
archive members are read from the stream without unpacking to disk.

Reading never raises for a bad input: an item that cannot be read carries an ``error``
instead of ``data``, so callers can count and report it rather than lose it.
"""
from __future__ import annotations

import dataclasses
import posixpath
import tarfile
import zipfile
from typing import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

ARCHIVE_SEPARATOR = "!"
ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# Bigger than any real survey photo; a larger declared member is a zip bomb or a mistake.
DEFAULT_MAX_MEMBER_BYTES = 256 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Item:
    """One input: its name and either its bytes or the reason they could not be read."""

    uri: str
    data: bytes | None = None
    error: str | None = None
    stage: str = "read"


class SourceError(ValueError):
    """A user-given input pattern that matches nothing or cannot be listed."""


def is_archive(path: str) -> bool:
    lower = path.lower()
    return lower.endswith(ZIP_SUFFIXES) or lower.endswith(TAR_SUFFIXES)


def _is_directory(path: str) -> bool:
    """A path is listed as a folder when it names one (locally) or ends with a slash.

    Object stores have no folders, so ``gs://bucket/prefix`` without a trailing slash is a
    folder exactly when nothing matches it as a file but something lives below it.
    """
    if path.endswith("/"):
        return True
    if FileSystems.get_scheme(path) is None:
        import os

        return os.path.isdir(path)
    return not _match(path) and bool(_match(path.rstrip("/") + "/**"))


def _match(pattern: str) -> list[str]:
    try:
        result = FileSystems.match([pattern])[0]
    except Exception:  # Beam raises BeamIOError when a pattern matches nothing.
        return []
    return [m.path for m in result.metadata_list]


def expand(pattern: str) -> list[str]:
    """Files named by a folder, glob, file or archive path, sorted for reproducible order."""
    if _is_directory(pattern):
        paths = _match(pattern.rstrip("/") + "/**")
    else:
        paths = _match(pattern)
    paths = sorted(set(paths))
    if not paths:
        raise SourceError(f"{pattern}: matches no file")
    return paths


def read_file(path: str) -> bytes:
    # UNCOMPRESSED: Beam would otherwise inflate a ``.gz`` silently and hide what the file is.
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


def unsafe_member_name(name: str) -> str | None:
    """Why an archive member name is refused, or None when it is a plain relative path."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"unsafe archive member name {name!r}: absolute path"
    if ".." in posixpath.normpath(name).split("/") or ".." in name.split("/"):
        return f"unsafe archive member name {name!r}: '..' escapes the archive"
    return None


def _zip_members(path: str, max_member_bytes: int) -> Iterator[Item]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        with zipfile.ZipFile(handle) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                uri = f"{path}{ARCHIVE_SEPARATOR}{info.filename}"
                reason = unsafe_member_name(info.filename)
                if reason is None and info.file_size > max_member_bytes:
                    reason = (f"archive member declares {info.file_size} bytes, over the "
                              f"{max_member_bytes}-byte limit")
                if reason is not None:
                    yield Item(uri, error=reason)
                    continue
                try:
                    with archive.open(info) as member:
                        data = member.read(max_member_bytes + 1)
                except Exception as exc:  # bad CRC, unsupported compression, encrypted...
                    yield Item(uri, error=f"unreadable archive member: {exc}")
                    continue
                if len(data) > max_member_bytes:
                    yield Item(uri, error=f"archive member inflates past the "
                                          f"{max_member_bytes}-byte limit")
                else:
                    yield Item(uri, data=data)


def _tar_members(path: str, max_member_bytes: int) -> Iterator[Item]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        # Stream mode ("r|*") reads members in order and never seeks: fine on object stores.
        with tarfile.open(fileobj=handle, mode="r|*") as archive:
            for member in archive:
                if member.isdir():
                    continue
                uri = f"{path}{ARCHIVE_SEPARATOR}{member.name}"
                reason = unsafe_member_name(member.name)
                if reason is None and not member.isfile():
                    reason = "archive member is a link or device, not a file"
                if reason is None and member.size > max_member_bytes:
                    reason = (f"archive member declares {member.size} bytes, over the "
                              f"{max_member_bytes}-byte limit")
                if reason is not None:
                    yield Item(uri, error=reason)
                    continue
                extracted = archive.extractfile(member)
                yield Item(uri, data=extracted.read() if extracted else b"")


def read_items(path: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[Item]:
    """Items of one matched file: the file itself, or each member of an archive.

    A broken archive yields the members read before the damage plus one error item for the
    archive, so nothing that was seen goes unreported.
    """
    if not is_archive(path):
        try:
            yield Item(path, data=read_file(path))
        except Exception as exc:
            yield Item(path, error=f"unreadable file: {exc}")
        return
    members = _zip_members if path.lower().endswith(ZIP_SUFFIXES) else _tar_members
    try:
        yield from members(path, max_member_bytes)
    except Exception as exc:
        yield Item(path, error=f"unreadable archive: {type(exc).__name__}: {exc}")


def read_uri(uri: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> bytes:
    """The bytes behind an item's uri, archive members included (for thumbnails, re-reads)."""
    if ARCHIVE_SEPARATOR in uri:
        archive, member = uri.split(ARCHIVE_SEPARATOR, 1)
        if is_archive(archive):
            for item in read_items(archive, max_member_bytes):
                if item.uri == uri:
                    if item.data is None:
                        raise OSError(f"{uri}: {item.error}")
                    return item.data
            raise FileNotFoundError(f"{uri}: no such archive member")
    return read_file(uri)


def iter_items(patterns: list[str] | str,
               max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[Item]:
    """All items of all patterns, each file once even when two patterns name it."""
    if isinstance(patterns, str):
        patterns = [patterns]
    seen: set[str] = set()
    for pattern in patterns:
        for path in expand(pattern):
            if path not in seen:
                seen.add(path)
                yield from read_items(path, max_member_bytes)
