"""Turn user-given inputs (folders, globs, files, archives; local or ``gs://``) into items.

An *item* is one input image candidate: a plain file, or one member of a ``.zip`` /
``.tar`` / ``.tar.gz`` archive. Object stores go through Beam's ``FileSystems``, so any file
system Beam knows works; local folders are listed and opened here, because Beam's local
listing drops dangling links and link loops without a word and its open blocks for ever
on a FIFO. Archive members are read from the stream without unpacking to disk.

Every item has a *uri* that is unique, one line of valid UTF-8, and names its input
unambiguously (:func:`file_uri`, :func:`member_uri`, :func:`split_uri`): names are taken
as the file system and the archive give them, and ``%``, the ``!`` separator, control and
line-separator characters and bytes that are not UTF-8 are percent-escaped (``caf%E9.jpg``
for a latin-1 name, ``a%0Ab.jpg`` for a newline). ``ARCHIVE!member`` names a member, and
``ARCHIVE!member!N`` the N-th member of an archive that repeats that name.

Reading never raises for a bad input: an item that cannot be read carries an ``error``
instead of ``data``, so callers can count and report it rather than lose it.

Reading can also be split from listing, so that one archive is read by many workers
(:func:`locate`, then :class:`DeferredReader` wherever the rest lands): a zip's central
directory says where each member lies, so a zip is listed down to its members, checked by
the same rules, and each member is read later by whoever gets it; a plain file is read
where it lands; a tar is one stream, read front to back where it is listed. Both ways give
the same items.
"""
from __future__ import annotations

import bz2
import contextlib
import dataclasses
import errno
import gzip
import io
import lzma
import os
import posixpath
import re
import stat
import tarfile
import zipfile
from typing import IO, Callable, ContextManager, Iterator, NamedTuple, Sequence, TypeVar

from apache_beam.io.filesystem import CompressionTypes, FileSystem
from apache_beam.io.filesystems import FileSystems

ARCHIVE_SEPARATOR = "!"
# Characters a uri never holds as such: the escape itself, the separator, C0/C1 controls
# (newline, carriage return, NEL...), the Unicode line and paragraph separators (which
# ``str.splitlines`` and some CSV readers break lines at) and lone surrogates, which is how
# Python hands over the bytes of a name that are not UTF-8.
_ESCAPED = re.compile("[%!\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")
_ESCAPES = re.compile("(?:%[0-9A-Fa-f]{2})+")
_GLOB = re.compile(r"^[^[*?]*")
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
# A zip's readable members travel to their readers in slices of consecutive members, about
# SLICES_PER_ARCHIVE of them per archive: enough to share one archive among many workers,
# few enough that a reader which had to open the archive (parse its central directory, some
# 4 us a member) for every slice would still spend over 80% of its time on the members
# (a few ms each). A slice also closes at SLICE_BYTES of compressed data, the size Beam's
# gs:// reader fetches at once, so large photos go one or two to a slice.
SLICES_PER_ARCHIVE = 256
SLICE_BYTES = 16 * 1024 * 1024
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


@dataclasses.dataclass(frozen=True)
class FileToRead:
    """A listed plain file, not read yet (:func:`locate`)."""

    uri: str


@dataclasses.dataclass(frozen=True)
class MembersToRead:
    """Readable members of one zip, not read yet: ``(position in the central directory,
    uri)`` each, consecutive in the archive (:func:`locate`)."""

    archive: str  # the archive's uri
    members: tuple[tuple[int, str], ...]


# What :func:`locate` gives: items already read (or refused), or what is left to read.
Located = Item | FileToRead | MembersToRead


class SourceError(ValueError):
    """A user-given input pattern that matches nothing or cannot be listed."""


class InputRefused(ValueError):
    """A listed input that is deliberately not read (a FIFO, a link leaving the inputs)."""


def _escape(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8", "surrogateescape"))


def _unescape(match: re.Match[str]) -> str:
    return bytes.fromhex(match.group().replace("%", "")).decode("utf-8", "surrogateescape")


def quote_name(name: str) -> str:
    """``name`` as it appears in a uri: see the module docstring for what is escaped."""
    return _ESCAPED.sub(_escape, name)


def unquote_name(quoted: str) -> str:
    """The exact name behind :func:`quote_name`, undecodable bytes included."""
    return _ESCAPES.sub(_unescape, quoted)


def file_uri(path: str) -> str:
    return quote_name(path)


def member_uri(archive: str, name: str, occurrence: int = 1) -> str:
    """The uri of an archive member; ``occurrence`` counts members of the same name."""
    uri = f"{quote_name(archive)}{ARCHIVE_SEPARATOR}{quote_name(name)}"
    return uri if occurrence == 1 else f"{uri}{ARCHIVE_SEPARATOR}{occurrence}"


def split_uri(uri: str) -> tuple[str, str | None, int]:
    """``(path, member name or None, occurrence)``: what :func:`file_uri` and
    :func:`member_uri` were given."""
    parts = uri.split(ARCHIVE_SEPARATOR)
    if len(parts) > 3 or (len(parts) == 3 and not parts[2].isdigit()):
        raise ValueError(f"{uri!r} is not a crackscan uri")
    member = unquote_name(parts[1]) if len(parts) > 1 else None
    return unquote_name(parts[0]), member, int(parts[2]) if len(parts) == 3 else 1


def file_path(uri: str) -> str:
    """The path of a plain file's uri (as listed by :func:`list_uris`)."""
    path, member, _ = split_uri(uri)
    if member is not None:
        raise ValueError(f"{uri!r} names an archive member, not a file")
    return path


def is_archive(path: str) -> bool:
    lower = path.lower()
    return lower.endswith(ZIP_SUFFIXES) or lower.endswith(TAR_SUFFIXES)


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None


def _is_directory(path: str) -> bool:
    """A path is listed as a folder when it names one (locally) or ends with a slash.

    Object stores have no folders, so ``gs://bucket/prefix`` without a trailing slash is a
    folder exactly when nothing matches it as a file but something lives below it.
    """
    if _is_local(path):
        return os.path.isdir(path)
    if path.endswith("/"):
        return True
    return not _match(path) and bool(_match(path.rstrip("/") + "/**"))


def _local_entries(folder: str) -> Iterator[str]:
    """Everything under a local folder that is not itself a folder: files, links of every
    kind (never followed), FIFOs, sockets, devices, and sub-folders that cannot be listed,
    which then fail to read with the reason."""
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current or "."))
        except OSError:
            if current == folder:
                raise
            yield current
            continue
        for entry in entries:
            path = os.path.join(current, entry.name)
            if entry.is_dir(follow_symlinks=False):
                pending.append(path)
            else:
                yield path


def _local_match(pattern: str) -> list[str]:
    """Beam's glob rules (``*`` within a folder, ``**`` across) over :func:`_local_entries`."""
    prefix = _GLOB.match(pattern).group(0)
    if prefix == pattern:
        return [pattern] if os.path.lexists(pattern) else []
    regex = re.compile(FileSystem.translate_pattern(pattern))
    folder = os.path.dirname(prefix)
    try:
        return [path for path in _local_entries(folder) if regex.match(path)]
    except OSError as exc:
        raise SourceError(f"{pattern}: cannot list {folder or '.'}: {exc}") from None


def _match(pattern: str) -> list[str]:
    try:
        result = FileSystems.match([pattern])[0]
    except Exception:  # Beam raises BeamIOError when a pattern matches nothing.
        return []
    return [m.path for m in result.metadata_list]


def expand(pattern: str) -> list[str]:
    """Files named by a folder, glob, file or archive path, sorted for reproducible order."""
    if _is_local(pattern):
        if os.path.isdir(pattern):
            try:
                paths = list(_local_entries(pattern.rstrip("/") or "/"))
            except OSError as exc:
                raise SourceError(f"{pattern}: cannot list the folder: {exc}") from None
        else:
            paths = _local_match(pattern)
    elif _is_directory(pattern):
        paths = _match(pattern.rstrip("/") + "/**")
    else:
        paths = _match(pattern)
    paths = sorted(set(paths))
    if not paths:
        raise SourceError(f"{pattern}: matches no file")
    return paths


def list_uris(pattern: str) -> list[str]:
    """:func:`expand` as uris: what may travel between pipeline steps whatever the names."""
    return [file_uri(path) for path in expand(pattern)]


def input_root(pattern: str) -> str | None:
    """The local folder a pattern lists (the file itself for a plain path), or None on an
    object store: links found under it may point inside it, never out of it."""
    if not _is_local(pattern):
        return None
    if os.path.isdir(pattern):
        return pattern.rstrip("/") or "/"
    prefix = _GLOB.match(pattern).group(0)
    return pattern if prefix == pattern else os.path.dirname(prefix) or "."


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _link_target(path: str, roots: Sequence[str] | None) -> str:
    """Where a local link leads, when it may be followed; else why not (``InputRefused``)."""
    try:
        target = os.path.realpath(path, strict=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputRefused("symbolic link loop: the link never reaches a file") from None
        if exc.errno == errno.ENOENT:
            raise InputRefused(f"dangling symbolic link: its target {os.readlink(path)!r} "
                               f"does not exist") from None
        raise
    if roots is not None and not any(_within(target, os.path.realpath(root))
                                     for root in roots):
        raise InputRefused("symbolic link to a path outside the input folders: not followed")
    return target


_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO (named pipe)",
          stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device"}


def _open_local(path: str, roots: Sequence[str] | None) -> IO[bytes]:
    """A regular local file opened for reading, without ever blocking on what it is.

    ``O_NONBLOCK`` makes opening a FIFO return at once (the check after it then refuses
    it), where a plain ``open`` would wait for a writer for ever.
    """
    target = _link_target(path, roots) if os.path.islink(path) else path
    descriptor = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
            behind = "a symbolic link to " if target != path else ""
            raise InputRefused(f"not a regular file: {behind}{kind}, not read")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def open_input(path: str, roots: Sequence[str] | None = None) -> IO[bytes]:
    """A listed file opened for reading; ``roots`` are the local folders links may stay in
    (None: links are followed wherever they lead)."""
    if _is_local(path):
        return _open_local(path, roots)
    # UNCOMPRESSED: Beam would otherwise inflate a ``.gz`` silently and hide what the file is.
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_file(path: str, limit: int = -1) -> bytes:
    """The file's bytes, or its first ``limit`` bytes when ``limit`` is not negative."""
    with open_input(path) as handle:
        return handle.read(limit)


def unsafe_member_name(name: str) -> str | None:
    """Why an archive member name is refused, or None when it is a plain relative path."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"unsafe archive member name {name!r}: absolute path"
    if ".." in posixpath.normpath(name).split("/") or ".." in name.split("/"):
        return f"unsafe archive member name {name!r}: '..' escapes the archive"
    return None


class _MemberNames:
    """Uris of one archive's members, counting each name's occurrences.

    An archive may repeat a name (zip and tar both allow it). Each occurrence is an input
    of its own with a uri of its own; only the first is read, so a repeated name costs no
    inflating, whatever size its members declare.
    """

    def __init__(self, archive: str) -> None:
        self._archive = archive
        self._seen: dict[str, int] = {}

    def uri(self, name: str) -> tuple[str, str | None]:
        """The member's uri, and why it is refused for its name alone (or None)."""
        occurrence = self._seen.get(name, 0) + 1
        self._seen[name] = occurrence
        uri = member_uri(self._archive, name, occurrence)
        if occurrence > 1:
            return uri, (f"duplicate archive member name: occurrence {occurrence} of "
                         f"{name!r} in this archive, not read (only the first is)")
        if not name:
            return uri, "archive member has an empty name"
        return uri, unsafe_member_name(name)


def _over_limit(size: int, max_member_bytes: int) -> str | None:
    if size > max_member_bytes:
        return f"archive member declares {size} bytes, over the {max_member_bytes}-byte limit"
    return None


def _zip_refusal(info: zipfile.ZipInfo, max_member_bytes: int) -> str | None:
    """Why a zip member is not read, from its central directory entry alone (or None)."""
    reason = _over_limit(info.file_size, max_member_bytes)
    if reason is None and info.compress_type not in ZIP_BOUNDED_COMPRESSIONS:
        method = ZIP_COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
        reason = (f"archive member is compressed with {method}, which cannot be inflated "
                  f"within a size bound; re-pack the archive with deflate")
    return reason


class _ZipEntry(NamedTuple):
    index: int  # position in the central directory
    uri: str
    refusal: str | None


def _zip_plan(archive: zipfile.ZipFile, path: str, max_member_bytes: int
              ) -> Iterator[_ZipEntry]:
    """Every file member of a zip with its uri, and why it is refused before any of its
    data is read: the name (unsafe, empty, repeated), the declared size, the compression."""
    names = _MemberNames(path)
    for index, info in enumerate(archive.infolist()):
        if info.filename.endswith("/"):
            continue  # a folder entry
        uri, reason = names.uri(info.filename)
        yield _ZipEntry(index, uri, reason or _zip_refusal(info, max_member_bytes))


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, uri: str) -> Item:
    """One member that its plan let through, read from its local header on."""
    try:
        with archive.open(info) as member:
            # Never more than the declared size, which is within the limit: a member that
            # inflates past it fails its CRC check instead.
            return Item(uri, data=member.read(info.file_size))
    except Exception as exc:  # bad CRC, encrypted, corrupt or cut-off data...
        return Item(uri, error=f"unreadable archive member: {exc}")


def _zip_members(handle: IO[bytes], path: str, max_member_bytes: int) -> Iterator[Item]:
    with zipfile.ZipFile(handle) as archive:
        for entry in _zip_plan(archive, path, max_member_bytes):
            if entry.refusal is not None:
                yield Item(entry.uri, error=entry.refusal)
            else:
                yield _read_zip_member(archive, archive.infolist()[entry.index], entry.uri)


def _zip_slices(handle: IO[bytes], path: str, max_member_bytes: int
                ) -> Iterator[Item | MembersToRead]:
    """A zip listed from its central directory: refused members as error items, the rest
    as slices to read elsewhere (see ``SLICES_PER_ARCHIVE``)."""
    with zipfile.ZipFile(handle) as archive:
        infos = archive.infolist()
        plan = list(_zip_plan(archive, path, max_member_bytes))
    readable = [(entry.index, entry.uri) for entry in plan if entry.refusal is None]
    per_slice = -(-len(readable) // SLICES_PER_ARCHIVE)
    archive_uri = file_uri(path)
    for entry in plan:
        if entry.refusal is not None:
            yield Item(entry.uri, error=entry.refusal)
    members: list[tuple[int, str]] = []
    size = 0
    for index, uri in readable:
        members.append((index, uri))
        size += infos[index].compress_size
        if len(members) == per_slice or size >= SLICE_BYTES:
            yield MembersToRead(archive_uri, tuple(members))
            members, size = [], 0
    if members:
        yield MembersToRead(archive_uri, tuple(members))


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


def _tar_members(handle: IO[bytes], path: str, max_member_bytes: int) -> Iterator[Item]:
    names = _MemberNames(path)
    with (_inflated(handle) as stream,
          # Stream mode reads members in order and never seeks: fine on object stores.
          tarfile.open(fileobj=stream, mode="r|", tarinfo=_StrictTarInfo) as archive):
        while (member := archive.next()) is not None:
            # tarfile keeps every header it reads in ``members``, a list as long as the
            # archive; nothing here looks back, so each is dropped once read.
            archive.members.clear()
            if member.isdir():
                continue
            uri, reason = names.uri(member.name)
            if reason is None and not member.isfile():
                reason = "archive member is a link or device, not a file"
            if reason is None:
                reason = _over_limit(member.size, max_member_bytes)
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


def _unopened(uri: str, exc: Exception) -> Item:
    """The item of a listed file that could not be opened or read, refused or failing."""
    return Item(uri, error=str(exc) if isinstance(exc, InputRefused)
                else f"unreadable file: {exc}")


def _read_file_item(path: str, max_member_bytes: int, roots: Sequence[str] | None) -> Item:
    uri = file_uri(path)
    try:
        with open_input(path, roots) as handle:
            data = handle.read(max_member_bytes + 1)
    except Exception as exc:
        return _unopened(uri, exc)
    if len(data) > max_member_bytes:
        return Item(uri, error=f"file is larger than the {max_member_bytes}-byte limit for "
                               f"one image")
    return Item(uri, data=data)


Part = TypeVar("Part", Item, Item | MembersToRead)


def _archive_parts(path: str, max_member_bytes: int, roots: Sequence[str] | None,
                   members: Callable[[IO[bytes], str, int], Iterator[Part]]
                   ) -> Iterator[Part | Item]:
    """What ``members`` finds in an archive, and an error item for the archive itself when
    it cannot be opened, breaks off, or holds no file."""
    uri = file_uri(path)
    try:
        handle = open_input(path, roots)
    except Exception as exc:
        yield _unopened(uri, exc)
        return
    found = False
    with handle:
        try:
            for part in members(handle, path, max_member_bytes):
                found = True
                yield part
        except Exception as exc:
            yield Item(uri, error=f"unreadable archive: {type(exc).__name__}: {exc}")
            return
    if not found:
        yield Item(uri, error="empty archive: it holds no files")


def _is_zip(path: str) -> bool:
    return path.lower().endswith(ZIP_SUFFIXES)


def read_items(path: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
               roots: Sequence[str] | None = None) -> Iterator[Item]:
    """Items of one listed file: the file itself, or each member of an archive.

    A broken archive yields the members read before the damage plus one error item for the
    archive, so nothing that was seen goes unreported; so does an archive without a single
    file in it. No item holds more than ``max_member_bytes``: a larger file or member is an
    error item, read no further than the limit. A FIFO, socket or device, a link loop, a
    dangling link and (when ``roots`` are given) a link leading out of them are error
    items, never opened for reading.
    """
    if not is_archive(path):
        yield _read_file_item(path, max_member_bytes, roots)
        return
    yield from _archive_parts(path, max_member_bytes, roots,
                              _zip_members if _is_zip(path) else _tar_members)


def locate(path: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
           roots: Sequence[str] | None = None) -> Iterator[Located]:
    """One listed file as :func:`read_items` would read it, minus what can be read later
    and elsewhere: a plain file is left unread, a zip is listed from its central directory
    (its refused members and the errors of the archive itself as items, the rest as
    slices), and a tar, one stream, is read here. :class:`DeferredReader` reads the rest;
    the items are those of :func:`read_items`, by the same checks."""
    if not is_archive(path):
        yield FileToRead(file_uri(path))
    else:
        yield from _archive_parts(path, max_member_bytes, roots,
                                  _zip_slices if _is_zip(path) else _tar_members)


class DeferredReader:
    """Reads what :func:`locate` left unread, wherever it went.

    The last zip read stays open with its central directory parsed: a worker usually
    gets many slices of the same archive. ``close`` closes it.
    """

    def __init__(self, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
                 roots: Sequence[str] | None = None) -> None:
        self._max_member_bytes = max_member_bytes
        self._roots = roots
        self._open: tuple[str, IO[bytes], zipfile.ZipFile] | None = None

    def read(self, located: Located) -> Iterator[Item]:
        if isinstance(located, Item):
            yield located
        elif isinstance(located, FileToRead):
            yield _read_file_item(file_path(located.uri), self._max_member_bytes, self._roots)
        else:
            yield from self._members(located)

    def _archive(self, uri: str) -> zipfile.ZipFile:
        if self._open is None or self._open[0] != uri:
            self.close()
            handle = open_input(file_path(uri), self._roots)
            try:
                self._open = (uri, handle, zipfile.ZipFile(handle))
            except BaseException:
                handle.close()
                raise
        return self._open[2]

    def _members(self, located: MembersToRead) -> Iterator[Item]:
        try:
            archive = self._archive(located.archive)
        except Exception as exc:  # deleted, replaced or refused since it was listed
            for _, uri in located.members:
                yield Item(uri, error=f"archive could not be opened again to read this "
                                      f"member: {type(exc).__name__}: {exc}")
            return
        infos = archive.infolist()
        for index, uri in located.members:
            info = infos[index] if index < len(infos) else None
            if info is None or member_uri(file_path(located.archive), info.filename) != uri:
                yield Item(uri, error="archive changed since it was listed: this member is "
                                      "no longer where its central directory put it")
                continue
            # The entry is read again from the archive now open: its size and compression
            # pass the same rule as at listing time, or it is not read.
            refusal = _zip_refusal(info, self._max_member_bytes)
            yield (Item(uri, error=refusal) if refusal is not None
                   else _read_zip_member(archive, info, uri))

    def close(self) -> None:
        if self._open is not None:
            _, handle, archive = self._open
            self._open = None
            archive.close()
            handle.close()


def read_uri(uri: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> bytes:
    """The bytes behind an item's uri, archive members included (for thumbnails, re-reads)."""
    path, member, _ = split_uri(uri)
    if member is None:
        return read_file(path)
    items = _zip_member_items(path, uri, max_member_bytes) if _is_zip(path) else read_items(
        path, max_member_bytes)
    for item in items:
        if item.uri == uri:
            if item.data is None:
                raise OSError(f"{uri}: {item.error}")
            return item.data
    raise FileNotFoundError(f"{uri}: no such archive member")


def _zip_member_items(path: str, uri: str, max_member_bytes: int) -> Iterator[Item]:
    """The item of one zip member, found by its uri in the archive's plan and read alone,
    without inflating the members before it."""
    with open_input(path) as handle, zipfile.ZipFile(handle) as archive:
        for entry in _zip_plan(archive, path, max_member_bytes):
            if entry.uri == uri:
                yield (Item(uri, error=entry.refusal) if entry.refusal is not None
                       else _read_zip_member(archive, archive.infolist()[entry.index], uri))
                return


def input_roots(patterns: Sequence[str]) -> tuple[str, ...] | None:
    """The local folders of ``patterns`` (see :func:`input_root`); None when none is local."""
    roots = tuple(root for root in map(input_root, patterns) if root is not None)
    return roots or None


def iter_items(patterns: list[str] | str,
               max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[Item]:
    """All items of all patterns, each file once even when two patterns name it."""
    if isinstance(patterns, str):
        patterns = [patterns]
    roots = input_roots(patterns)
    seen: set[str] = set()
    for pattern in patterns:
        for path in expand(pattern):
            if path not in seen:
                seen.add(path)
                yield from read_items(path, max_member_bytes, roots)
