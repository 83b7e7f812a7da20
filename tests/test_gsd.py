"""Ground sampling distance from ``--gsd-mm`` or a photo's EXIF and DJI XMP, on real photos.

Each photo is a real concrete patch or field photo from ``tests/fixtures`` with a camera's
EXIF (make, model, focal length, focal-plane resolution) and a DJI drone's XMP (height above
the take-off point, gimbal pitch) written into it by Pillow, as the camera writes them. The
expected GSDs are worked out by hand in each test: sensor width x distance / (focal length x
image width). The pipeline runs are real runs of ``pipeline.score`` with the tiny model.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from crackscan import gsd
from crackscan.decode import decode_photo
from pipeline.bigquery_sink import prediction_schema
from pipeline.records import PREDICTION_FIELDS
from scoring_helpers import concrete, field_photos, read_jsonl, read_predictions, score

# The hand calculations agree with the code to rounding; the issue asks for 2%.
WITHIN = 0.02


def dji_xmp(relative_altitude: str | None = "+30.00",
            gimbal_pitch: str | None = "-89.90") -> bytes:
    """A DJI XMP packet as a drone writes it: values as attributes of the description."""
    values = {"RelativeAltitude": relative_altitude, "GimbalPitchDegree": gimbal_pitch,
              "GimbalYawDegree": "+12.40", "AbsoluteAltitude": "+541.30"}
    attributes = " ".join(f'drone-dji:{name}="{value}"' for name, value in values.items()
                          if value is not None)
    return (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
            b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:drone-dji="http://www.dji.com/'
            b'drone-dji/1.0/" ' + attributes.encode() + b"/></rdf:RDF></x:xmpmeta>")


def camera_exif(make: str | None, model: str | None, focal_mm: float | None,
                focal_plane: tuple[float, int] | None = None) -> Image.Exif:
    exif = Image.Exif()
    if make is not None:
        exif[ExifTags.Base.Make] = make
    if model is not None:
        exif[ExifTags.Base.Model] = model
    details = exif.get_ifd(ExifTags.IFD.Exif)
    if focal_mm is not None:
        details[ExifTags.Base.FocalLength] = IFDRational(round(focal_mm * 100), 100)
    if focal_plane is not None:
        resolution, unit = focal_plane
        details[ExifTags.Base.FocalPlaneXResolution] = IFDRational(round(resolution * 1000),
                                                                   1000)
        details[ExifTags.Base.FocalPlaneResolutionUnit] = unit
    return exif


def photo_bytes(path: Path, exif: Image.Exif | None = None, xmp: bytes | None = None) -> bytes:
    """The real photo re-saved as a JPEG carrying ``exif`` and ``xmp``."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    params = {"quality": 95}
    if exif is not None:
        params["exif"] = exif
    if xmp is not None:
        params["xmp"] = xmp
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", **params)
    return buffer.getvalue()


def sampling_of(data: bytes, gsd_mm: float | None = None) -> gsd.GroundSampling:
    photo = decode_photo(data)
    height, width = photo.rgb.shape[:2]
    return gsd.ground_sampling(photo.metadata, width, height, gsd_mm)


@pytest.fixture(scope="module")
def patch(real_data: Path) -> Path:
    """A real 227x227 photo of intact concrete."""
    return concrete(real_data, "Negative", 1)[0]


@pytest.fixture(scope="module")
def deck(real_data: Path) -> Path:
    """A real 256x256 UAV photo of a bridge deck."""
    return field_photos(real_data, "uavcrack", 1)[0]


# --------------------------------------------------------------------------- from the EXIF


@pytest.mark.parametrize("make, model, focal_mm, altitude, expected", [
    # Phantom 4 RTK, 1-inch sensor 13.2 mm wide, 8.8 mm lens, 30 m over the deck, 256 px:
    # 13.2 * 30000 / (8.8 * 256) = 175.78 mm per pixel.
    ("DJI", "FC6310R", 8.8, "+30.00", 175.78),
    # Mavic 3 Enterprise wide camera, Four Thirds 17.3 mm, 12.29 mm lens, 12.5 m:
    # 17.3 * 12500 / (12.29 * 256) = 68.73 mm per pixel.
    ("DJI", "M3E", 12.29, "+12.50", 68.73),
    # Zenmuse P1 with its 35 mm lens, full frame 35.9 mm, 40 m:
    # 35.9 * 40000 / (35 * 256) = 160.27 mm per pixel.
    ("DJI", "ZenmuseP1", 35.0, "40", 160.27),
    # Mavic 2 Pro, Hasselblad L1D-20c, 1-inch, 10.26 mm lens, 8 m:
    # 13.2 * 8000 / (10.26 * 256) = 40.20 mm per pixel.
    ("Hasselblad", "L1D-20c", 10.26, "+8.0", 40.20),
])
def test_nadir_photo_of_a_known_camera_gets_the_gsd_worked_out_by_hand(
        deck: Path, make: str, model: str, focal_mm: float, altitude: str, expected: float):
    data = photo_bytes(deck, camera_exif(make, model, focal_mm), dji_xmp(altitude))
    sampling = sampling_of(data)
    assert sampling.source == gsd.EXIF and sampling.missing is None
    assert sampling.gsd_mm == pytest.approx(expected, rel=WITHIN)


def test_a_portrait_photo_spans_the_sensor_width_with_its_long_side(real_data: Path):
    """A drone photo turned upright by its EXIF orientation keeps its scale."""
    path = field_photos(real_data, "uavcrack", 1)[0]
    with Image.open(path) as image:
        wide = image.convert("RGB").resize((384, 256))
    exif = camera_exif("DJI", "FC6310", 8.8)
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    wide.save(buffer, format="JPEG", exif=exif, xmp=dji_xmp("+30.00"))
    # 13.2 * 30000 / (8.8 * 384) = 117.19 mm per pixel, on a photo shown 256 x 384.
    assert decode_photo(buffer.getvalue()).rgb.shape[:2] == (384, 256)
    assert sampling_of(buffer.getvalue()).gsd_mm == pytest.approx(117.19, rel=WITHIN)


def test_an_unlisted_camera_that_writes_its_focal_plane_resolution_has_a_gsd(deck: Path):
    """A full-frame camera that is not in the table: 8688 px over a 36 mm wide sensor is
    6129.6 pixels per inch (unit 2). At 20 m with a 50 mm lens, one pixel of the sensor
    (25.4 / 6129.6 = 0.0041438 mm) covers 0.0041438 * 20000 / 50 = 1.6575 mm."""
    exif = camera_exif("Canon", "Canon EOS 5DS R", 50.0, focal_plane=(6129.6, 2))
    data = photo_bytes(deck, exif, dji_xmp("+20.00"))
    sampling = sampling_of(data)
    assert sampling.source == gsd.EXIF
    assert sampling.gsd_mm == pytest.approx(1.6575, rel=WITHIN)


@pytest.mark.parametrize("exif, xmp, reason", [
    (None, None, gsd.NO_EXIF),
    (camera_exif("DJI", "FC6310", None), dji_xmp(), gsd.NO_FOCAL_LENGTH),
    (camera_exif("DJI", "FC9999", 8.8), dji_xmp(), gsd.UNKNOWN_CAMERA),
    # The Matrice 30's zoom camera writes the wide camera's model: its sensor is not known.
    (camera_exif("DJI", "M30", 21.0), dji_xmp(), gsd.UNKNOWN_CAMERA),
    (camera_exif("DJI", "FC6310", 8.8), None, gsd.NO_ALTITUDE),
    (camera_exif("DJI", "FC6310", 8.8), dji_xmp(relative_altitude="-2.0"), gsd.NO_ALTITUDE),
    (camera_exif("DJI", "FC6310", 8.8), dji_xmp(gimbal_pitch=None), gsd.NO_GIMBAL_PITCH),
    (camera_exif("DJI", "FC6310", 8.8), dji_xmp(gimbal_pitch="-45.0"), gsd.OBLIQUE),
    (camera_exif("DJI", "FC6310", 8.8), dji_xmp(gimbal_pitch="-79.0"), gsd.OBLIQUE),
], ids=["no-exif", "no-focal-length", "unknown-camera", "m30-zoom", "no-xmp",
        "below-take-off", "no-pitch", "oblique-45", "oblique-11"])
def test_without_the_geometry_the_gsd_is_empty_with_the_reason(deck: Path, exif, xmp,
                                                                reason: str):
    assert sampling_of(photo_bytes(deck, exif, xmp)) == gsd.GroundSampling(missing=reason)


def test_a_zero_focal_length_is_a_metadata_warning_and_no_gsd(deck: Path):
    photo = decode_photo(photo_bytes(deck, camera_exif("DJI", "FC6310", 0.0), dji_xmp()))
    assert photo.metadata.focal_length_mm is None
    assert photo.metadata.warnings == ("focal length 0 is not positive",)
    assert gsd.ground_sampling(photo.metadata, 256, 256).missing == gsd.NO_FOCAL_LENGTH


def test_the_flag_wins_over_the_exif(deck: Path):
    data = photo_bytes(deck, camera_exif("DJI", "FC6310", 8.8), dji_xmp())
    assert sampling_of(data, 0.25) == gsd.GroundSampling(0.25, gsd.FLAG)
    assert sampling_of(photo_bytes(deck), 0.25) == gsd.GroundSampling(0.25, gsd.FLAG)


def test_the_bigquery_schema_has_the_gsd_columns_nullable():
    fields = {field["name"]: (field["type"], field["mode"])
              for field in prediction_schema()["fields"]}
    names = list(fields)
    at = names.index("gsd_mm")
    assert names[at:at + 3] == list(gsd.COLUMNS) == list(PREDICTION_FIELDS[at:at + 3])
    assert (fields["gsd_mm"], fields["gsd_source"], fields["gsd_missing"]) == (
        ("FLOAT", "NULLABLE"), ("STRING", "NULLABLE"), ("STRING", "NULLABLE"))


# --------------------------------------------------------------------------- pipeline runs


@pytest.fixture(scope="module")
def flight(patch: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A night's folder: a nadir shot, an oblique shot of a wall, an unknown camera and a
    photo without metadata, all of the same real concrete patch."""
    root = tmp_path_factory.mktemp("gsd-flight")
    files = {
        "nadir.jpg": photo_bytes(patch, camera_exif("DJI", "FC6310S", 8.8), dji_xmp("+30.00")),
        "wall.jpg": photo_bytes(patch, camera_exif("DJI", "FC6310S", 8.8),
                                dji_xmp("+30.00", "-10.0")),
        "unknown.jpg": photo_bytes(patch, camera_exif("ACME", "Inspector 1", 6.0), dji_xmp()),
        "plain.jpg": photo_bytes(patch),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def test_a_run_writes_the_gsd_and_counts_why_it_is_missing(
        flight: Path, tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = score("--input", flight, "--model", tiny_model_dir, "--output", out)
    rows = read_predictions(out)
    nadir = rows[str(flight / "nadir.jpg")]
    # 13.2 mm sensor, 30 m, 8.8 mm lens, 227 px: 13.2 * 30000 / (8.8 * 227) = 198.24 mm.
    assert float(nadir["gsd_mm"]) == pytest.approx(198.24, rel=WITHIN)
    assert (nadir["gsd_source"], nadir["gsd_missing"]) == ("exif", "")
    for name, reason in (("wall.jpg", "oblique"), ("unknown.jpg", "unknown_camera"),
                         ("plain.jpg", "no_exif")):
        row = rows[str(flight / name)]
        assert (row["gsd_mm"], row["gsd_source"], row["gsd_missing"]) == ("", "", reason)
    assert summary["gsd_known"] == 1
    assert summary["gsd_missing_by_reason"] == {**dict.fromkeys(gsd.REASONS, 0), "oblique": 1,
                                                "unknown_camera": 1, "no_exif": 1}
    assert summary["gsd_mm"] is None and summary["accounting_ok"] is True
    assert ("Ground sampling distance known for 1 of 4 photos; none for 3 (1 no exif, "
            "1 unknown camera, 1 oblique)") in (out / "report.html").read_text()


def test_gsd_mm_wins_over_the_exif_in_a_run(flight: Path, tiny_model_dir: Path,
                                            tmp_path: Path):
    out = tmp_path / "out"
    summary = score("--input", flight, "--model", tiny_model_dir, "--output", out,
                    "--gsd-mm", "0.42", "--format", "jsonl")
    rows = read_jsonl(out, "predictions")
    assert len(rows) == 4
    for row in rows:
        assert list(row) == list(PREDICTION_FIELDS)
        assert (row["gsd_mm"], row["gsd_source"], row["gsd_missing"]) == (0.42, "flag", None)
    assert (summary["gsd_known"], summary["gsd_mm"]) == (4, 0.42)
    assert set(summary["gsd_missing_by_reason"].values()) == {0}
    assert ("Ground sampling distance known for 4 of 4 photos (0.42 mm/px from --gsd-mm)"
            in (out / "report.html").read_text())
