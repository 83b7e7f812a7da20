"""Hostile inputs: a seeded corpus of broken, misnamed, oversized and malicious files and
archives, made from the real shared photos and scored by the real pipeline in one run.

Whatever lands in a survey folder, the run must finish; every file and every archive member
must end exactly once in predictions or errors, an error naming it and saying why; nothing
may be written outside OUT; and reading and decoding any one file must stay within bounded
memory and time. The corpus's own bookkeeping says what each input is, independently of
the reader under test.
"""
from __future__ import annotations

import bz2
import collections
import dataclasses
import gzip
import io
import json
import lzma
import os
import random
import struct
import subprocess
import sys
import tarfile
import tempfile
import uuid
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from crackscan.sources import DEFAULT_MAX_MEMBER_BYTES
from crackscan.tiles import TileLimitError, check_tile_count
from pipeline.records import STAGES
from scoring_helpers import (concrete, deflated, encoded, png_declaring, read_jsonl,
                             read_predictions, score, zip_archive, zip_member)

REPO = Path(__file__).resolve().parents[1]
SEED = 20261125
FUZZED = 40  # truncated copies of real images, and as many with bytes flipped
BOMB_BYTES = 1 << 30  # what the zip bomb's member inflates to
SKIPPED_BYTES = 64 << 20  # zeros in a refused tar member that the reader must skip
# Safety bounds, not benchmarks: the slowest file takes well under a second and the
# largest allocation is one item at the sources' 256 MiB cap.
SECONDS_PER_FILE = 10.0
RSS_GROWTH_LIMIT = 512 * 2**20
# Names as uris spell them: a newline and the "!" separator inside a name are escaped.
IN_URIS = {
    'survey/odd,name "quoted"\nsecond line.jpg': 'survey/odd,name "quoted"%0Asecond line.jpg',
    "survey/ünïcödé!bang.png": "survey/ünïcödé%21bang.png",
}


@dataclasses.dataclass(frozen=True)
class Expect:
    """Where an input must end: ``scored``, ``failed`` (at ``stage``, the error containing
    ``reason``) or ``either`` for fuzzed files, whose fate the decoder decides."""

    outcome: str
    stage: str | None = None
    reason: str | None = None


SCORED, EITHER = Expect("scored"), Expect("either")


def failed(stage: str, reason: str) -> Expect:
    return Expect("failed", stage, reason)


@dataclasses.dataclass
class Corpus:
    root: Path
    expected: dict[str, Expect]  # every input by uri: files and archive members
    escapes: list[str]  # member names that point outside their archive
    token: str  # in every escaping name, to look for it on disk afterwards


# --------------------------------------------------------------------------- builders


def scan_start(data: bytes) -> int:
    """Where the header ends and image data begins: JPEG start of scan, PNG first IDAT."""
    return data.index(b"\xff\xda") if data.startswith(b"\xff\xd8") else data.index(b"IDAT") - 4


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF) claiming another size; all else untouched."""
    position = 2
    while True:
        marker = jpeg[position + 1]
        length = struct.unpack(">H", jpeg[position + 2:position + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            size = position + 5
            return jpeg[:size] + struct.pack(">HH", height, width) + jpeg[size + 4:]
        position += 2 + length


def deflated_zeros(size: int) -> tuple[bytes, int]:
    """Raw deflate of ``size`` zero bytes (a multiple of 1 MiB) and their CRC-32, in about
    a MiB: after a full flush each MiB of zeros compresses to the same bytes."""
    block = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    chunk = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(block, crc)
    return chunk * (size >> 20) + compressor.flush(), crc


def tar_archive(members: list[tuple[str, bytes]], special: tuple[tarfile.TarInfo, ...] = ()
                ) -> tuple[bytes, list[tarfile.TarInfo]]:
    """An uncompressed tar of regular files, plus special entries given as ``TarInfo``s,
    and where each member's header and data lie in it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in special:
            archive.addfile(info)
    data = buffer.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return data, archive.getmembers()


def gzip_cut_inside(data: bytes, start: int, end: int) -> bytes:
    """The shortest prefix of ``gzip(data)`` that inflates to more than ``start`` bytes:
    an archive cut off inside ``data[start:end]``."""
    compressed = gzip.compress(data, mtime=0)
    low, high = 1, len(compressed)
    while low < high:
        middle = (low + high) // 2
        if len(zlib.decompressobj(wbits=31).decompress(compressed[:middle])) > start:
            high = middle
        else:
            low = middle + 1
    assert start < len(zlib.decompressobj(wbits=31).decompress(compressed[:low])) < end
    return compressed[:low]


def build_corpus(root: Path, real_data: Path) -> Corpus:
    rng = random.Random(SEED)
    token = f"escape-{uuid.uuid4().hex[:12]}"
    expected: dict[str, Expect] = {}

    def put(name: str, data: bytes, expect: Expect | None) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if expect is not None:
            expected[str(path)] = expect
        return path

    jpegs = [path.read_bytes() for path in concrete(real_data, "Positive", 6)
             + concrete(real_data, "Negative", 6)]
    pngs = [encoded(Image.open(io.BytesIO(jpeg)), "PNG") for jpeg in jpegs[:4]]
    jpeg, png = jpegs[0], pngs[0]
    originals = jpegs + pngs

    for index, data in enumerate(jpegs[:3]):
        put(f"good/{index}.jpg", data, SCORED)
    put("good/3.png", png, SCORED)

    # Fuzzed copies: cut anywhere (a third of them inside the header), or bytes flipped
    # both in the header and in the image data. The decoder decides what each becomes.
    for index in range(FUZZED):
        data = rng.choice(originals)
        cut = rng.randrange(1, scan_start(data) if index % 3 == 0 else len(data))
        put(f"fuzz/cut-{index:02d}.{'png' if data in pngs else 'jpg'}", data[:cut], EITHER)
    for index in range(FUZZED):
        source = rng.choice(originals)
        data, header = bytearray(source), scan_start(source)
        positions = ([rng.randrange(header) for _ in range(rng.randint(1, 3))]
                     + [rng.randrange(header, len(data)) for _ in range(rng.randint(1, 5))])
        for position in positions:
            data[position] ^= rng.randrange(1, 256)
        put(f"fuzz/flip-{index:02d}.{'png' if source in pngs else 'jpg'}", bytes(data),
            EITHER)

    # Names that lie about the content.
    put("misnamed/png-bytes.jpg", png, SCORED)
    put("misnamed/jpeg-bytes.tif", jpeg, SCORED)
    put("misnamed/notes.png", b"battery 3 swapped at 14:02; wind 6 m/s\n",
        failed("decode", "not an image"))
    put("misnamed/jpeg-bytes.zip", jpeg, failed("read", "unreadable archive: BadZipFile"))
    put("misnamed/jpeg-bytes.tar.gz", jpeg, failed("read", "unreadable archive: ReadError"))
    put("misnamed/random-bytes.zip", rng.randbytes(4096),
        failed("read", "unreadable archive: BadZipFile"))

    # Valid headers declaring sizes no worker could hold.
    bomb_guard = failed("decode", "decompression bomb guard")
    put("huge/ihdr-65535.png", png_declaring(65535, 65535), bomb_guard)
    put("huge/ihdr-60000.png", png_declaring(60000, 60000), bomb_guard)
    put("huge/sof-65535.jpg", jpeg_declaring(jpeg, 65535, 65535), bomb_guard)
    put("huge/sof-60000.jpg", jpeg_declaring(jpeg, 60000, 60000), bomb_guard)
    oversized = put("huge/over-the-size-limit.jpg", b"", failed(
        "read", f"larger than the {DEFAULT_MAX_MEMBER_BYTES}-byte limit"))
    with oversized.open("r+b") as handle:  # sparse: no disk space, still read as zeros
        handle.truncate(DEFAULT_MAX_MEMBER_BYTES + 1)

    # Nothing in it.
    put("empty/zero.jpg", b"", failed("decode", "empty file"))
    put("empty/zero.png", b"", failed("decode", "empty file"))
    put("empty/zero.zip", b"", failed("read", "unreadable archive: BadZipFile"))
    put("empty/zero.tar.gz", b"", failed("read", "unreadable archive: ReadError"))
    no_files = failed("read", "empty archive: it holds no files")
    put("empty/no-members.zip", zip_archive([]), no_files)
    put("empty/no-members.tar", tar_archive([])[0], no_files)
    put("empty/no-members.tar.gz", gzip.compress(tar_archive([])[0]), no_files)
    folders = io.BytesIO()
    with zipfile.ZipFile(folders, "w") as archive:
        archive.writestr("flight/", b"")
        archive.writestr("flight/empty/", b"")
    put("empty/only-folders.zip", folders.getvalue(), no_files)

    # Members named to escape, oddly named members, members that are not photos.
    dotdot = failed("read", "'..' escapes the archive")
    absolute = failed("read", "absolute path")
    escapes_zip = root / "archives" / "escapes.zip"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("inside.jpg", jpeg)
    zip_names = {
        "survey/ok.jpg": (jpeg, SCORED),
        f"../{token}.jpg": (jpeg, dotdot),
        "../" * 12 + f"tmp/{token}.jpg": (jpeg, dotdot),
        f"survey/../../{token}-2.jpg": (jpeg, dotdot),
        f"/tmp/{token}-abs.jpg": (jpeg, absolute),
        f"C:/{token}-drive.jpg": (jpeg, absolute),
        'survey/odd,name "quoted"\nsecond line.jpg': (jpeg, SCORED),
        "survey/ünïcödé!bang.png": (png, SCORED),
        "survey/huge-dims.png": (png_declaring(65535, 65535), bomb_guard),
        "survey/nested.zip": (inner.getvalue(), failed("decode", "not an image")),
        "survey/empty.jpg": (b"", failed("decode", "empty file")),
    }
    put("archives/escapes.zip", zip_archive([zip_member(name, data)
                                             for name, (data, _) in zip_names.items()]), None)
    expected.update({f"{escapes_zip}!{IN_URIS.get(name, name)}": expect
                     for name, (_, expect) in zip_names.items()})

    escapes_tar = root / "archives" / "escapes.tar.gz"
    link = tarfile.TarInfo("survey/passwd.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    fifo = tarfile.TarInfo("survey/pipe.jpg")
    fifo.type = tarfile.FIFOTYPE
    tar_names = {
        "survey/ok.jpg": (jpeg, SCORED),
        f"../../{token}-tar.jpg": (jpeg, dotdot),
        f"/tmp/{token}-tar-abs.jpg": (jpeg, absolute),
    }
    put("archives/escapes.tar.gz", gzip.compress(tar_archive(
        [(name, data) for name, (data, _) in tar_names.items()], (link, fifo))[0]), None)
    expected.update({f"{escapes_tar}!{name}": expect
                     for name, (_, expect) in tar_names.items()})
    expected.update({f"{escapes_tar}!{info.name}": failed("read", "link or device")
                     for info in (link, fifo)})

    # A zip bomb: 1 GiB of zeros in about 1 MiB, once declared honestly, once declaring
    # 1,000 bytes; the photo behind them must still be scored.
    zeros, crc = deflated_zeros(BOMB_BYTES)
    bomb = put("archives/bomb.zip", zip_archive([
        ("bomb/zeros.jpg", zeros, BOMB_BYTES, crc), ("bomb/liar.jpg", zeros, 1000, crc),
        zip_member("bomb/ok.jpg", jpeg)]), None)
    expected.update({
        f"{bomb}!bomb/zeros.jpg": failed(
            "read", f"declares {BOMB_BYTES} bytes, over the {DEFAULT_MAX_MEMBER_BYTES}-byte"),
        f"{bomb}!bomb/liar.jpg": failed("read", "unreadable archive member"),
        f"{bomb}!bomb/ok.jpg": SCORED})

    # Compressed tars whose refused member is 64 MiB of zeros: skipping it must cost time
    # in proportion to its size (tarfile's own reader took minutes on these 10 KB files).
    zeros_tar = tar_archive([(f"../{token}-zeros.jpg", bytes(SKIPPED_BYTES)),
                             ("survey/ok.jpg", jpeg)])[0]
    for suffix, data in (("tar.xz", lzma.compress(zeros_tar, preset=0)),
                         ("tar.bz2", bz2.compress(zeros_tar))):
        skipped = put(f"archives/zeros.{suffix}", data, None)
        expected.update({f"{skipped}!../{token}-zeros.jpg": dotdot,
                         f"{skipped}!survey/ok.jpg": SCORED})
    # Zip compressions that Python's zipfile cannot inflate within a bound are refused.
    for method, name in ((zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")):
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w", compression=method) as archive:
            archive.writestr("survey/ok.jpg", jpeg)
        refused = put(f"archives/{name.lower()}.zip", packed.getvalue(), None)
        expected[f"{refused}!survey/ok.jpg"] = failed("read", f"compressed with {name}")

    # Damaged archives: what was read before the damage is scored, the member it cut is an
    # error of its own, and the archive is an error; members behind it cannot be known.
    data, infos = tar_archive([("t0.jpg", jpegs[1]), ("t1.png", pngs[1]),
                               ("t2.jpg", jpegs[2]), ("t3.jpg", jpegs[3])])
    cut_tar = put("archives/cut-inside-a-member.tar.gz", gzip_cut_inside(
        data, infos[2].offset_data + 1024, infos[2].offset_data + infos[2].size - 1024),
        failed("read", "unreadable archive"))
    expected.update({f"{cut_tar}!t0.jpg": SCORED, f"{cut_tar}!t1.png": SCORED,
                     f"{cut_tar}!t2.jpg": failed("read", "unreadable archive member")})
    boundary = put("archives/cut-between-members.tar", data[:infos[2].offset],
                   failed("read", "archive is truncated"))
    expected.update({f"{boundary}!t0.jpg": SCORED, f"{boundary}!t1.png": SCORED})
    header = bytearray(data)
    header[infos[1].offset + 3] ^= 0xFF  # inside t1's name: its checksum no longer holds
    damaged = put("archives/corrupt-header.tar", bytes(header),
                  failed("read", "corrupt member header"))
    expected[f"{damaged}!t0.jpg"] = SCORED
    put("archives/cut-directory.zip", zip_archive([zip_member("a.jpg", jpeg)])[:-30],
        failed("read", "unreadable archive: BadZipFile"))

    escapes = [uri.split("!", 1)[1] for uri in expected if "!" in uri and token in uri]
    return Corpus(root, expected, escapes, token)


# --------------------------------------------------------------------------- one run


def snapshot(tree: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``tree`` but outside ``skip``: size and modification time."""
    files = {}
    for path in tree.rglob("*"):
        if skip not in path.parents and path != skip and not path.is_dir():
            status = path.lstat()
            files[str(path.relative_to(tree))] = (status.st_size, status.st_mtime_ns)
    return files


@dataclasses.dataclass
class HostileRun:
    corpus: Corpus
    out: Path
    summary: dict
    before: dict[str, tuple[int, int]]
    after: dict[str, tuple[int, int]]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory, real_data: Path,
                tiny_model_dir: Path) -> HostileRun:
    base = tmp_path_factory.mktemp("hostile")
    corpus = build_corpus(base / "inputs", real_data)
    out = base / "out"
    before = snapshot(base, out)
    summary = score("--input", corpus.root, "--model", tiny_model_dir, "--output", out)
    return HostileRun(corpus, out, summary, before, snapshot(base, out))


@pytest.fixture(scope="module")
def decode_probe(hostile_run: HostileRun, real_data: Path) -> dict:
    """``tests/decode_probe.py`` over every file of the corpus, in its own process."""
    paths = sorted(path for path in hostile_run.corpus.root.rglob("*") if path.is_file())
    return probe_files(paths, hostile_run.out.parent, real_data)


# --------------------------------------------------------------------------- tests


def test_every_input_lands_exactly_once_in_predictions_or_errors(hostile_run: HostileRun):
    corpus, out, summary = hostile_run.corpus, hostile_run.out, hostile_run.summary
    predictions, errors = read_predictions(out), read_jsonl(out, "errors")
    landed = collections.Counter([*predictions, *(row["uri"] for row in errors)])
    assert len(corpus.expected) >= 100
    assert sorted(set(landed) - set(corpus.expected)) == [], "rows for inputs never given"
    assert sorted(set(corpus.expected) - set(landed)) == [], "inputs without a row"
    assert [uri for uri, count in landed.items() if count > 1] == [], "inputs with two rows"

    by_uri = {row["uri"]: row for row in errors}
    for uri, expect in corpus.expected.items():
        if expect.outcome == "scored":
            assert uri in predictions, by_uri.get(uri)
        elif expect.outcome == "failed":
            assert uri in by_uri, f"{uri} was scored, expected: {expect}"
            assert by_uri[uri]["stage"] == expect.stage, by_uri[uri]
            assert expect.reason in by_uri[uri]["error"], by_uri[uri]
    for row in errors:
        assert row["stage"] in STAGES and len(row["error"]) > 10, row

    assert summary["seen"] == len(corpus.expected)
    assert summary["scored"] == len(predictions) and summary["failed"] == len(errors)
    assert summary["seen"] == summary["scored"] + summary["failed"]
    assert summary["accounting_ok"] is True
    fuzzed = [uri for uri, expect in corpus.expected.items() if expect == EITHER]
    print(f"\n{summary['seen']} hostile inputs: {summary['scored']} scored, "
          f"{summary['failed']} failed; of {len(fuzzed)} fuzzed files "
          f"{sum(uri in predictions for uri in fuzzed)} still decoded")


def test_pipeline_gives_each_input_the_verdict_of_the_shared_reader_and_decoder(
        hostile_run: HostileRun, decode_probe: dict):
    """The pipeline adds nothing and loses nothing on the way: an input fails with the
    very message that ``read_items`` or ``decode_rgb`` gives it, and scores at the size it
    decodes to."""
    predictions = read_predictions(hostile_run.out)
    errors = {row["uri"]: row for row in read_jsonl(hostile_run.out, "errors")}
    items = [item for entry in decode_probe["files"].values() for item in entry["items"]]
    assert sorted(item["uri"] for item in items) == sorted(hostile_run.corpus.expected)
    for item in items:
        uri = item["uri"]
        if "error" in item:
            assert (errors[uri]["stage"], errors[uri]["error"]) == (
                item["stage"], item["error"]), uri
        elif uri in predictions:
            row = predictions[uri]
            assert (int(row["width"]), int(row["height"])) == (item["width"],
                                                               item["height"]), uri
        else:
            assert errors[uri]["stage"] == "tile", errors[uri]


def test_nothing_is_written_outside_out(hostile_run: HostileRun,
                                        tmp_path_factory: pytest.TempPathFactory):
    corpus, out = hostile_run.corpus, hostile_run.out
    assert hostile_run.after == hostile_run.before, "files outside OUT changed"
    bases = [corpus.root / "archives", out, Path.cwd()]
    for name in corpus.escapes:
        for base in bases:
            target = Path(os.path.normpath(os.path.join(base, name)))
            assert not target.exists(), f"member {name!r} was written to {target}"
    written = list(tmp_path_factory.getbasetemp().rglob(f"*{corpus.token}*"))
    for folder in (Path(tempfile.gettempdir()), Path.cwd()):
        written += folder.glob(f"*{corpus.token}*")
    assert written == []


def test_reading_and_decoding_any_file_is_bounded_in_memory_and_time(decode_probe: dict):
    seconds = {path: entry["seconds"] for path, entry in decode_probe["files"].items()}
    slowest = max(seconds, key=seconds.__getitem__)
    growth = decode_probe["peak_rss"] - decode_probe["baseline_rss"]
    print(f"\n{len(seconds)} files read and decoded; slowest {seconds[slowest]:.2f} s "
          f"({Path(slowest).name}); peak RSS grew {growth / 2**20:.0f} MiB")
    assert seconds[slowest] < SECONDS_PER_FILE, slowest
    assert growth < RSS_GROWTH_LIMIT


# ------------------------------------------------------------- small files, large costs

FLAT_16BIT = (8000, 8000)  # 64 megapixels of one grey: about 120 KB as a 16-bit PNG
REPEATS = 40  # members of one name in a zip
REPEATED_BYTES = 64 << 20  # what each of them inflates to
REPEATED_SECONDS = 2.0  # one of them inflated; all of them take several times as long


def probe_files(paths: list[Path], work: Path, real_data: Path) -> dict:
    """``tests/decode_probe.py`` over ``paths``, in a process of its own."""
    listing = work / "probe-paths.json"
    listing.write_text(json.dumps([str(path) for path in paths]))
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "decode_probe.py"), str(listing),
         str(concrete(real_data, "Positive", 1)[0])],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_small_16_bit_png_decodes_in_bounded_memory(tmp_path: Path, real_data: Path):
    """A flat 16-bit PNG is tiny on disk; rescaled whole in float64 it needed 25 bytes a
    pixel (1.6 GB here, 3.1 GB at the pixel limit). Band by band it needs the image and
    its RGB copy."""
    width, height = FLAT_16BIT
    grey = Image.frombytes("I;16", FLAT_16BIT, b"\x00\x80" * (width * height))
    png = tmp_path / "flat-16-bit.png"
    png.write_bytes(encoded(grey, "PNG"))
    assert png.stat().st_size < 512 * 1024
    probe = probe_files([png], tmp_path, real_data)
    (item,) = probe["files"][str(png)]["items"]
    assert (item["width"], item["height"]) == FLAT_16BIT
    growth = probe["peak_rss"] - probe["baseline_rss"]
    print(f"\n{png.stat().st_size // 1024} KB 16-bit PNG of {width * height / 1e6:.0f} MP: "
          f"peak RSS grew {growth / 2**20:.0f} MiB")
    assert growth < 6 * width * height  # 2 bytes a pixel decoded + 3 in RGB, plus bands


def test_repeated_member_names_are_refused_before_they_are_inflated(tmp_path: Path,
                                                                     real_data: Path):
    zeros, crc = deflated_zeros(REPEATED_BYTES)
    jpeg = concrete(real_data, "Positive", 1)[0].read_bytes()
    archive = tmp_path / "repeats.zip"
    archive.write_bytes(zip_archive([("same.jpg", zeros, REPEATED_BYTES, crc)] * REPEATS
                                    + [zip_member("after.jpg", jpeg)]))
    probe = probe_files([archive], tmp_path, real_data)
    entry = probe["files"][str(archive)]
    items = {item["uri"]: item for item in entry["items"]}
    assert "not an image" in items[f"{archive}!same.jpg"]["error"]
    for occurrence in range(2, REPEATS + 1):
        error = items[f"{archive}!same.jpg!{occurrence}"]["error"]
        assert error.startswith("duplicate archive member name"), error
    assert items[f"{archive}!after.jpg"]["width"] == 227
    print(f"\n{archive.stat().st_size // 1024} KB zip of {REPEATS} members of one name, "
          f"{REPEATED_BYTES >> 20} MiB each: read in {entry['seconds']:.2f} s")
    assert entry["seconds"] < REPEATED_SECONDS


def test_a_strip_is_not_stretched_into_thousands_of_tiles():
    check_tile_count(4800, 6000, 980, 227)
    check_tile_count(1, 1, 1, 227)  # smaller than a tile: scored whole, one tile
    check_tile_count(60, 2000, 12, 227)
    with pytest.raises(TileLimitError, match="strip 1 pixels wide.*2671 tiles"):
        check_tile_count(1, 2000, 2671, 227)
    with pytest.raises(TileLimitError, match="over the 10000-tile limit"):
        check_tile_count(4800, 6000, 10_001, 227)


def test_a_1x2000_png_is_a_tile_error_not_2671_tiles(tmp_path: Path, tiny_model_dir: Path):
    strip = tmp_path / "in" / "strip.png"
    strip.parent.mkdir()
    strip.write_bytes(encoded(Image.new("L", (1, 2000), 128), "PNG"))
    out = tmp_path / "out"
    summary = score("--input", strip.parent, "--model", tiny_model_dir, "--output", out)
    (error,) = read_jsonl(out, "errors")
    assert (error["uri"], error["stage"]) == (str(strip), "tile")
    assert "strip 1 pixels wide" in error["error"]
    assert summary["tiles"] == 0 and summary["accounting_ok"] is True
