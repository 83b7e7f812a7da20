"""Position, capture time, camera and gimbal of each photo, read from real files written here.

Every photo is a real file: EXIF written by Pillow where it is well formed, EXIF written entry
by entry where it must hold what Pillow refuses to write (a GPS block that is a string, a
rational over zero), HEIC written by pillow-heif, a DNG as Pillow writes a TIFF with the
DNGVersion tag. The pipeline runs are real runs of ``pipeline.score`` with the tiny model.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import struct
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin

from crackscan import gsd
from crackscan.decode import DecodeError, decode_photo, decode_rgb
from crackscan.model_card import ModelCard
from crackscan.photo_metadata import COLUMNS, PhotoMetadata
from pipeline.records import NO_MEASUREMENT, PREDICTION_FIELDS, SourceImage, parse_predictions
from pipeline.tiling import DecodeAndTile
from scoring_helpers import concrete, read_jsonl, read_predictions, score

DEGREES = 1e-6
# 12 deg 30' 15.5" S, 45 deg 0' 1.25" W: a point in the southern and western hemispheres.
SOUTH = -(12 + 30 / 60 + 15.5 / 3600)
WEST = -(45 + 1.25 / 3600)
OLD_FIELDS = ("uri", "label", "crack_probability", "threshold", "width", "height", "tiles",
              "positive_tiles", "model_version", "scored_at", "sha256")
ASCII, SHORT, LONG, RATIONAL = 2, 3, 4, 5
GPS_POINTER = 0x8825
DJI_XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
           b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:drone-dji="http://www.dji.com/drone-'
           b'dji/1.0/" drone-dji:GimbalYawDegree="-92.30" drone-dji:FlightYawDegree="+10.0">'
           b'<drone-dji:GimbalPitchDegree>-90.00</drone-dji:GimbalPitchDegree>'
           b'</rdf:Description></rdf:RDF></x:xmpmeta>')


# --------------------------------------------------------------------------- writing photos


def pixels() -> Image.Image:
    return Image.linear_gradient("L").resize((96, 80)).convert("RGB")


def saved(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def geotagged_exif(lat_ref: str = "S", lon_ref: str = "W", altitude_ref: bytes = b"\x00",
                   latitude: tuple = (12, 30, 15.5)) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "DJI\x00\x00  "
    exif[0x0110] = " FC6310 "
    exif[GPS_POINTER] = {1: lat_ref, 2: latitude, 3: lon_ref, 4: (45, 0, 1.25),
                         5: altitude_ref, 6: 123.5}
    return exif


def dated_exif(original: str | None, offset: str | None = None, modified: str | None = None,
               modified_offset: str | None = None) -> Image.Exif:
    exif = Image.Exif()
    if modified is not None:
        exif[0x0132] = modified
    details = exif.get_ifd(ExifTags.IFD.Exif)
    for tag, value in ((0x9003, original), (0x9011, offset), (0x9010, modified_offset)):
        if value is not None:
            details[tag] = value
    return exif


def entry(tag: int, kind: int, values: list) -> tuple[int, int, int, bytes]:
    """One EXIF entry as bytes: ASCII takes one str, the others numbers ((n, d) rationals)."""
    if kind == ASCII:
        data = values[0].encode() + b"\0"
        return tag, kind, len(data), data
    if kind == RATIONAL:
        return tag, kind, len(values), b"".join(struct.pack("<II", *pair) for pair in values)
    layout = "<H" if kind == SHORT else "<I"
    return tag, kind, len(values), b"".join(struct.pack(layout, v) for v in values)


def directory(entries: list[tuple[int, int, int, bytes]], offset: int) -> bytes:
    """A little-endian TIFF directory at ``offset``, its values after it."""
    data_at = offset + 2 + 12 * len(entries) + 4
    table, data = b"", b""
    for tag, kind, count, payload in sorted(entries):
        if len(payload) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + payload.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", tag, kind, count, data_at + len(data))
            data += payload + b"\0" * (len(payload) % 2)
    return struct.pack("<H", len(entries)) + table + b"\0\0\0\0" + data


def raw_exif(ifd0: list, gps: list | None = None) -> bytes:
    """EXIF written entry by entry, as a careless camera or tool writes it: it can hold what
    Pillow itself refuses to write."""
    if gps is not None:
        first = directory([*ifd0, entry(GPS_POINTER, LONG, [0])], 8)
        ifd0 = [*ifd0, entry(GPS_POINTER, LONG, [8 + len(first)])]
        return b"Exif\0\0II*\0" + struct.pack("<I", 8) + directory(ifd0, 8) + directory(
            gps, 8 + len(first))
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + directory(ifd0, 8)


def gps_entries(latitude: tuple = (RATIONAL, [(12, 1), (30, 1), (155, 10)])) -> list:
    return [entry(1, ASCII, ["S"]), entry(2, *latitude), entry(3, ASCII, ["W"]),
            entry(4, RATIONAL, [(45, 1), (0, 1), (125, 100)])]


def malformed(orientation: int = 1) -> dict[str, tuple[bytes, str]]:
    """EXIF that must cost a photo its position and nothing else, each with its warning."""
    turned = [entry(0x0112, SHORT, [orientation])]
    out_of_range = geotagged_exif(latitude=(123, 0, 0))
    out_of_range[0x0112] = orientation
    return {
        "gps_block_string": (raw_exif([*turned, entry(GPS_POINTER, ASCII, ["not a directory"])]),
                             "GPS block (EXIF tag 0x8825) is a str, not a directory"),
        "gps_block_outside": (raw_exif([*turned, entry(GPS_POINTER, LONG, [99999])]),
                              "GPS block at offset 99999 is empty or outside the EXIF data"),
        "gps_latitude_string": (raw_exif(turned, gps_entries((ASCII, ["12.5"]))),
                                "GPS latitude '12.5' is not a number (str)"),
        "gps_latitude_123": (out_of_range.tobytes(), "GPS latitude 123 is out of range"),
        "gps_zero_denominator": (raw_exif(turned, gps_entries(
            (RATIONAL, [(12, 1), (30, 0), (155, 10)]))), "zero denominator"),
    }


MALFORMED = malformed()


def dng(image: Image.Image) -> bytes:
    """A TIFF carrying DNGVersion 1.4.0.0, as a DNG's first directory does."""
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[50706] = b"\x01\x04\x00\x00"
    tags.tagtype[50706] = 1  # BYTE
    return saved(image, "TIFF", tiffinfo=tags)


def metadata_of(data: bytes) -> PhotoMetadata:
    photo = decode_photo(data)
    assert photo.rgb.shape == (80, 96, 3), "the photo itself must decode whatever its metadata"
    return photo.metadata


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "HEIF"])
def test_photo_without_metadata_gives_none_and_no_warning(fmt: str):
    assert metadata_of(saved(pixels(), fmt)) == PhotoMetadata()


def test_exif_that_is_not_tiff_data_gives_none():
    assert metadata_of(saved(pixels(), "JPEG", exif=b"Exif\0\0not TIFF at all")) == (
        PhotoMetadata())


@pytest.mark.parametrize("lat_ref, lon_ref, sign_lat, sign_lon", [
    ("S", "W", 1, 1), ("N", "E", -1, -1), ("s\x00", b"W", 1, 1)])
def test_gps_position_is_signed_decimal_degrees(lat_ref, lon_ref, sign_lat, sign_lon):
    metadata = metadata_of(saved(pixels(), "JPEG", exif=geotagged_exif(lat_ref, lon_ref)))
    assert metadata.latitude == pytest.approx(sign_lat * SOUTH, abs=DEGREES)
    assert metadata.longitude == pytest.approx(sign_lon * WEST, abs=DEGREES)
    assert metadata.altitude_m == pytest.approx(123.5)
    assert (metadata.camera_make, metadata.camera_model) == ("DJI", "FC6310")
    assert metadata.warnings == ()


def test_altitude_below_sea_level_is_negative():
    metadata = metadata_of(saved(pixels(), "JPEG", exif=geotagged_exif(altitude_ref=b"\x01")))
    assert metadata.altitude_m == pytest.approx(-123.5)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_gps_gives_none_and_a_warning_never_an_error(name: str):
    exif, reason = MALFORMED[name]
    metadata = metadata_of(saved(pixels(), "JPEG", exif=exif))
    assert metadata.latitude is None
    assert any(reason in warning for warning in metadata.warnings), metadata.warnings
    if not name.startswith("gps_block"):  # the longitude beside a bad latitude is still good
        assert metadata.longitude == pytest.approx(WEST, abs=DEGREES)


@pytest.mark.parametrize("exif, expected, warning", [
    (dated_exif("2026:11:30 21:14:05", "+01:00"), "2026-11-30T21:14:05+01:00", None),
    (dated_exif("2026:11:30 21:14:05"), "2026-11-30T21:14:05", None),
    (dated_exif("2026:11:30 21:14:05\x00", "-03:30"), "2026-11-30T21:14:05-03:30", None),
    (dated_exif(None, modified="2026:12:01 08:00:00", modified_offset="+05:45"),
     "2026-12-01T08:00:00+05:45", None),
    (dated_exif("    :  :     :  :  ", modified="2026:12:01 08:00:00"),
     "2026-12-01T08:00:00", None),
    (dated_exif("2026:11:30 21:14:05", "+1"), "2026-11-30T21:14:05",
     "capture time offset '+1' is not a UTC offset"),
    (dated_exif("yesterday at noon"), None, "capture time 'yesterday at noon' is not a date"),
    (dated_exif("2026:02:30 10:00:00"), None, "is not a date and time"),
], ids=["offset", "naive", "padded", "modified", "blank-original", "bad-offset",
        "not-a-date", "february-30"])
def test_capture_time_is_iso_8601_with_the_offset_when_recorded(exif, expected, warning):
    metadata = metadata_of(saved(pixels(), "JPEG", exif=exif))
    assert metadata.captured_at == expected
    if warning is None:
        assert metadata.warnings == ()
    else:
        assert len(metadata.warnings) == 1 and warning in metadata.warnings[0]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_rotated_photo_with_malformed_gps_is_still_decoded_upright(name: str):
    """Pillow's own rotation rewrites the EXIF, and raised on a latitude written as text."""
    exif, reason = malformed(orientation=6)[name]
    photo = decode_photo(saved(pixels(), "JPEG", exif=exif))
    assert photo.rgb.shape == (96, 80, 3), "turned 90 degrees as orientation 6 says"
    assert photo.metadata.latitude is None
    assert [reason in warning for warning in photo.metadata.warnings] == [True]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_gives_the_pixels_pillow_gives(orientation: int):
    """Training and scoring share this decoder: turning on the array must not change a
    pixel of what ``ImageOps.exif_transpose`` showed them before."""
    rng = np.random.default_rng(orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = saved(Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)), "PNG",
                 exif=exif)
    with Image.open(io.BytesIO(data)) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert np.array_equal(decode_rgb(data), expected)


def test_camera_that_is_not_text_is_a_warning():
    exif = raw_exif([entry(0x010F, SHORT, [7]), entry(0x0110, ASCII, ["Mavic 3E"])])
    metadata = metadata_of(saved(pixels(), "JPEG", exif=exif))
    assert (metadata.camera_make, metadata.camera_model) == (None, "Mavic 3E")
    assert metadata.warnings == ("camera make 7 is not text (int)",)


@pytest.mark.parametrize("xmp, yaw, pitch, warning", [
    (DJI_XMP, -92.3, -90.0, None),
    (b'<rdf:Description drone-dji:GimbalYawDegree="north"/>', None, None, "is not a number"),
    (b"<drone-dji:GimbalPitchDegree>-900</drone-dji:GimbalPitchDegree>", None, None,
     "out of range"),
])
def test_dji_gimbal_angles_come_from_the_xmp(xmp: bytes, yaw, pitch, warning):
    metadata = metadata_of(saved(pixels(), "JPEG", xmp=xmp))
    assert (metadata.gimbal_yaw_deg, metadata.gimbal_pitch_deg) == (yaw, pitch)
    assert len(metadata.warnings) == (warning is not None)
    assert warning is None or warning in metadata.warnings[0]


def test_heic_is_decoded_with_its_exif_and_xmp():
    data = saved(pixels(), "HEIF", exif=geotagged_exif().tobytes(), xmp=DJI_XMP)
    metadata = metadata_of(data)
    assert metadata.latitude == pytest.approx(SOUTH, abs=DEGREES)
    assert metadata.longitude == pytest.approx(WEST, abs=DEGREES)
    assert (metadata.gimbal_yaw_deg, metadata.gimbal_pitch_deg) == (-92.3, -90.0)


@pytest.mark.parametrize("data, name", [
    (dng(pixels()), "flight/DJI_0001.DNG"), (dng(pixels()), "renamed.tif"),
    (dng(pixels()), None), (saved(pixels(), "JPEG"), "preview.dng")])
def test_dng_raw_is_refused_not_scored_from_its_preview(data: bytes, name: str | None):
    with pytest.raises(DecodeError, match="DNG raw is not decoded") as refused:
        decode_photo(data, name=name)
    assert name is None or str(refused.value).startswith(name)
    assert "convert it to TIFF or JPEG" in str(refused.value)


def test_metadata_warnings_are_counted_and_logged_and_the_photo_kept(
        caplog: pytest.LogCaptureFixture):
    photos = [SourceImage(f"survey/{name}.jpg", name, saved(pixels(), "JPEG", exif=exif))
              for name, (exif, _) in sorted(MALFORMED.items())]
    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create(photos) | DecodeAndTile(227, 170, 10**8)
    with caplog.at_level(logging.WARNING):
        result = pipeline.run()
        result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_name("metadata_warnings"))
    assert sum(counter.committed for counter in counters["counters"]) == len(MALFORMED)
    failed = result.metrics().query(MetricsFilter().with_name("failed_decode"))["counters"]
    assert sum(counter.committed for counter in failed) == 0
    logged = [record.getMessage() for record in caplog.records]
    for name, (_, reason) in MALFORMED.items():
        assert any(f"survey/{name}.jpg" in line and reason in line for line in logged), name


# --------------------------------------------------------------------------- pipeline runs


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory, real_data: Path) -> Path:
    """A night's folder: a real concrete photo geotagged in the south-west, the same with
    malformed GPS, a DJI HEIC, two DNGs and a PNG without metadata."""
    root = tmp_path_factory.mktemp("metadata-survey")
    with Image.open(concrete(real_data, "Positive", 1)[0]) as image:
        photo = image.convert("RGB")
    dated = geotagged_exif()
    dated.get_ifd(ExifTags.IFD.Exif).update({0x9003: "2026:11:30 21:14:05", 0x9011: "+01:00"})
    files = {
        "geotagged.jpg": saved(photo, "JPEG", exif=dated),
        "drone.heic": saved(photo, "HEIF", exif=geotagged_exif().tobytes(), xmp=DJI_XMP),
        "DJI_0002.dng": dng(photo),
        "preview.tif": dng(photo),
        "plain.png": saved(photo, "PNG"),
        **{f"{name}.jpg": saved(photo, "JPEG", exif=exif)
           for name, (exif, _) in MALFORMED.items()},
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def csv_run(survey: Path, tiny_model_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("metadata-csv") / "out"
    return out, score("--input", survey, "--model", tiny_model_dir, "--output", out)


def test_raw_photos_are_error_rows_and_everything_else_is_scored(
        csv_run: tuple[Path, dict], survey: Path):
    out, summary = csv_run
    rows, errors = read_predictions(out), read_jsonl(out, "errors")
    raws = {str(survey / "DJI_0002.dng"), str(survey / "preview.tif")}
    assert {row["uri"] for row in errors} == raws
    for row in errors:
        assert row["stage"] == "decode"
        assert row["error"].startswith(row["uri"]) and "DNG raw is not decoded" in row["error"]
    assert set(rows) == {str(path) for path in survey.iterdir()} - raws
    seen = len(list(survey.iterdir()))
    assert (summary["seen"], summary["scored"], summary["failed"]) == (seen, seen - 2, 2)
    assert summary["accounting_ok"] is True
    assert summary["metadata_warnings"] == len(MALFORMED)
    assert "Metadata warnings" in (out / "report.html").read_text()


def test_csv_rows_carry_position_time_camera_and_gimbal(csv_run: tuple[Path, dict],
                                                        survey: Path):
    out, _ = csv_run
    rows = read_predictions(out)
    geotagged = rows[str(survey / "geotagged.jpg")]
    assert float(geotagged["latitude"]) == pytest.approx(SOUTH, abs=DEGREES)
    assert float(geotagged["longitude"]) == pytest.approx(WEST, abs=DEGREES)
    assert (geotagged["altitude_m"], geotagged["captured_at"], geotagged["camera_make"],
            geotagged["camera_model"]) == ("123.5", "2026-11-30T21:14:05+01:00", "DJI", "FC6310")
    assert (geotagged["gimbal_yaw_deg"], geotagged["gimbal_pitch_deg"]) == ("", "")
    drone = rows[str(survey / "drone.heic")]
    assert float(drone["latitude"]) == pytest.approx(SOUTH, abs=DEGREES)
    assert (drone["gimbal_yaw_deg"], drone["gimbal_pitch_deg"]) == ("-92.3", "-90.0")
    assert all(rows[str(survey / "plain.png")][column] == "" for column in COLUMNS)
    for name in MALFORMED:
        row = rows[str(survey / f"{name}.jpg")]
        assert row["latitude"] == "" and row["label"] in ("Positive", "Negative"), row


def test_json_lines_rows_carry_the_position_as_numbers(
        survey: Path, tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    score("--input", survey / "geotagged.jpg", "--input", survey / "plain.png",
          "--model", tiny_model_dir, "--output", out, "--format", "jsonl")
    rows = {row["uri"]: row for row in read_jsonl(out, "predictions")}
    geotagged = rows[str(survey / "geotagged.jpg")]
    assert list(geotagged) == list(PREDICTION_FIELDS)
    assert geotagged["latitude"] == pytest.approx(SOUTH, abs=DEGREES)
    assert geotagged["longitude"] == pytest.approx(WEST, abs=DEGREES)
    assert geotagged["altitude_m"] == 123.5
    assert geotagged["captured_at"] == "2026-11-30T21:14:05+01:00"
    assert all(rows[str(survey / "plain.png")][column] is None for column in COLUMNS)


def test_skip_scored_carries_rows_written_before_the_metadata_columns(
        survey: Path, tiny_model_dir: Path, tmp_path: Path):
    """An output of the code before these columns: its CSV header ends at ``sha256``."""
    spec = ModelCard.read(str(tiny_model_dir))
    plain = survey / "plain.png"
    old_row = {"uri": str(plain), "label": "Negative", "crack_probability": 0.123456,
               "threshold": spec.threshold, "width": 227, "height": 227, "tiles": 1,
               "positive_tiles": 0, "model_version": spec.version,
               "scored_at": "2026-11-29T02:00:00Z",
               "sha256": hashlib.sha256(plain.read_bytes()).hexdigest()}
    previous = tmp_path / "previous"
    previous.mkdir()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(OLD_FIELDS)
    writer.writerow([old_row[field] for field in OLD_FIELDS])
    (previous / "predictions-00000-of-00001.csv").write_text(text.getvalue())
    (previous / "summary.json").write_text(json.dumps({"accounting_ok": True}))
    assert list(parse_predictions("predictions-00000-of-00001.csv", text.getvalue())) == [
        {**old_row, **dict.fromkeys(COLUMNS), **dict.fromkeys(gsd.COLUMNS), **NO_MEASUREMENT}]

    out = tmp_path / "out"
    summary = score("--input", plain, "--input", survey / "geotagged.jpg",
                    "--model", tiny_model_dir, "--output", out, "--skip-scored", previous)
    assert (summary["reused"], summary["scored"], summary["accounting_ok"]) == (1, 2, True)
    rows = read_predictions(out)
    carried = rows[str(plain)]
    assert carried == {**{field: str(value) for field, value in old_row.items()},
                       **dict.fromkeys(COLUMNS, ""), **dict.fromkeys(gsd.COLUMNS, ""),
                       **dict.fromkeys(NO_MEASUREMENT, "")}
    assert rows[str(survey / "geotagged.jpg")]["captured_at"] == "2026-11-30T21:14:05+01:00"
