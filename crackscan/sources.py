"""Turn user-given inputs (folders, globs, files, archives; local or ``gs://``) into items.

An *item* is one input image candidate: a plain file, or one member of a ``.zip`` /
``.tar`` / ``.tar.gz`` archive, named ``ARCHIVE!member/path``. Everything goes through
Beam's ``FileSystems`` so any file system Beam knows (local, ``gs://``, ...) works, and
archive members are read from the stream without unpacking to disk.

Reading never raises for a bad input: an item that cannot be read carries an ``error``
instead of ``data``, so callers can count and report it rather than lose it.
"""
from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import io
import lzma
import posixpath
import tarfile
import zipfile
from typing import IO, Callable, ContextManager, Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

ARCHIVE_SEPARATOR = "!"
ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# Bigger than any real survey photo; a larger archive member (or file) is a zip bomb or a
# mistake, and reading it whole would take a worker's memory.
DEFAULT_MAX_MEMBER_BYTES = 256 * 1024 * 1024
# Zip compressions whose members Python's zipfile inflates in steps bounded by the size
# asked for. It inflates bzip2 and LZMA members a whole read chunk at once, and a few KB
# of bzip2 can hold gigabytes, so those members are refused rather than read.
ZIP_BOUNDED_COMPRESSIONS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
ZIP_COMPRESSION_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA"}
# How a tar may be compressed, by its first bytes. These readers inflate no more than is
# asked for; tarfile's own "r|*" inflates each 10 KB read whole and copies what is left
# over on every read after, so skipping a refused member of zeros took over a minute in a
# 44 KB .tar.xz or a 6 KB .tar.bz2.
TAR_COMPRESSIONS: tuple[tuple[bytes, Callable[[IO[bytes]], IO[bytes]]], ...] = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
    (b"\x5d\x00\x00\x80", lzma.LZMAFile),  # the older .lzma format
)


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


def read_file(path: str, limit: int = -1) -> bytes:
    """The file's bytes, or its first ``limit`` bytes when ``limit`` is not negative."""
    # UNCOMPRESSED: Beam would otherwise inflate a ``.gz`` silently and hide what the file is.
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read(limit)


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
                if reason is None and info.compress_type not in ZIP_BOUNDED_COMPRESSIONS:
                    method = ZIP_COMPRESSION_NAMES.get(info.compress_type,
                                                       f"method {info.compress_type}")
                    reason = (f"archive member is compressed with {method}, which cannot be "
                              f"inflated within a size bound; re-pack the archive with "
                              f"deflate")
                if reason is not None:
                    yield Item(uri, error=reason)
                    continue
                try:
                    with archive.open(info) as member:
                        # Never more than the declared size, which is within the limit: a
                        # member that inflates past it fails its CRC check instead.
                        data = member.read(info.file_size)
                except Exception as exc:  # bad CRC, encrypted, corrupt data...
                    yield Item(uri, error=f"unreadable archive member: {exc}")
                    continue
                yield Item(uri, data=data)


class _StrictTarInfo(tarfile.TarInfo):
    """Reads member headers like ``tarfile``, but refuses an archive that ends badly.

    ``tarfile`` takes a missing, cut-off or corrupt header after the first member for the
    end of the archive and stops without a word, so every member behind a truncation or a
    damaged header would vanish from the run unreported. A proper archive ends with a zero
    block; anything else is raised here as the archive's error.
    """

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(archive)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):
            if archive.offset == 0:
                raise  # an empty or tiny file: tarfile's own error says so
            raise tarfile.ReadError(f"archive is truncated: it ends at byte {archive.offset} "
                                    f"without the end-of-archive marker") from None
        except tarfile.InvalidHeaderError as exc:
            if archive.offset == 0:
                raise
            raise tarfile.ReadError(f"corrupt member header at byte {archive.offset}: "
                                    f"{exc}") from None


class _EndsWhereDataEnds(io.RawIOBase):
    """A decompressing reader whose compressed data stopping short reads as its end.

    The gzip, bz2 and lzma readers raise ``EOFError`` there, and a read that meets it loses
    what it had already inflated: the member before the cut, complete, was blamed for it.
    Read as a short stream, the cut is found by ``tarfile`` where it falls: inside a member
    ("unexpected end of data") or between two ("archive is truncated").
    """

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        try:
            data = self._stream.read1(len(buffer))  # what is inflated, before any error
        except EOFError:
            return 0
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


def _inflated(handle: IO[bytes]) -> ContextManager[IO[bytes]]:
    """The tar stream inside a file, whichever of ``TAR_COMPRESSIONS`` it comes in."""
    magic = handle.read(6)
    handle.seek(0)
    for prefix, reader in TAR_COMPRESSIONS:
        if magic.startswith(prefix):
            return _EndsWhereDataEnds(reader(handle))
    return contextlib.nullcontext(handle)


def _tar_members(path: str, max_member_bytes: int) -> Iterator[Item]:
    with (FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle,
          _inflated(handle) as stream,
          # Stream mode reads members in order and never seeks: fine on object stores.
          tarfile.open(fileobj=stream, mode="r|", tarinfo=_StrictTarInfo) as archive):
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
            try:
                data = archive.extractfile(member).read()
            except Exception as exc:  # cut off or corrupt compressed data
                # Reported under the member's own name; the archive's error follows
                # when the next header cannot be read either.
                yield Item(uri, error=f"unreadable archive member: "
                                      f"{type(exc).__name__}: {exc}")
                continue
            yield Item(uri, data=data)


def read_items(path: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[Item]:
    """Items of one matched file: the file itself, or each member of an archive.

    A broken archive yields the members read before the damage plus one error item for the
    archive, so nothing that was seen goes unreported; so does an archive without a single
    file in it. No item holds more than ``max_member_bytes``: a larger file or member is an
    error item, read no further than the limit.
    """
    if not is_archive(path):
        try:
            data = read_file(path, max_member_bytes + 1)
        except Exception as exc:
            yield Item(path, error=f"unreadable file: {exc}")
            return
        if len(data) > max_member_bytes:
            yield Item(path, error=f"file is larger than the {max_member_bytes}-byte limit "
                                   f"for one image")
        else:
            yield Item(path, data=data)
        return
    members = _zip_members if path.lower().endswith(ZIP_SUFFIXES) else _tar_members
    count = 0
    try:
        for item in members(path, max_member_bytes):
            count += 1
            yield item
    except Exception as exc:
        yield Item(path, error=f"unreadable archive: {type(exc).__name__}: {exc}")
        return
    if count == 0:
        yield Item(path, error="empty archive: it holds no files")


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
