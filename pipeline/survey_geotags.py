"""Writes the bundled sample survey's GPS EXIF: ``python -m pipeline.survey_geotags``.

The sample photos come from public crack sets that carry no positions, so on their own they
cannot show what a geotagged drone survey gives (rows with coordinates, the GeoJSON and KML,
the report's map). This lays them out as one flight along a bridge deck and writes each
photo's position, altitude and capture time into its EXIF the way a drone camera does. The
positions are illustrative: they say where this sample *would* have been taken, nothing
about the sources' real sites.

The EXIF block is spliced into the file's bytes (a JPEG APP1 segment, a PNG ``eXIf``
chunk) rather than written by re-saving: re-encoding a JPEG would change the pixels the
sample's verdicts were measured on.
"""
from __future__ import annotations

import datetime
import math
import os
import struct
import zlib
from fractions import Fraction
from typing import NamedTuple

from PIL import ExifTags, Image, TiffImagePlugin

from crackscan import cli
from pipeline.demo import PHOTOS_DIR, read_truth
from pipeline.geo import METRES_PER_DEGREE_LATITUDE, METRES_PER_DEGREE_LONGITUDE_AT_EQUATOR

# An illustrative flight: a south-western start so both signs of the conversion are shown,
# 6 m between shots along a deck heading 63 degrees east of north, one shot every 4 s.
START_LATITUDE, START_LONGITUDE = -33.8612345, -70.6543219
HEADING_DEGREES, SPACING_M, ALTITUDE_M = 63.0, 6.0, 541.3
START = datetime.datetime(2026, 11, 30, 21, 14, 5,
                          tzinfo=datetime.timezone(datetime.timedelta(hours=-3)))
SECONDS_BETWEEN_SHOTS = 4
CAMERA_MAKE, CAMERA_MODEL = "crackscan", "sample survey (illustrative positions)"
# Seconds of arc to 1e-5: 3e-9 degrees, far below the 1e-6 the outputs are checked to.
SECONDS_DENOMINATOR = 100_000


class Shot(NamedTuple):
    photo: str
    latitude: float
    longitude: float
    altitude_m: float
    captured_at: datetime.datetime


def flight() -> list[Shot]:
    """One shot per sample photo, in ``truth.csv`` order along the deck."""
    north = math.cos(math.radians(HEADING_DEGREES)) * SPACING_M
    east = math.sin(math.radians(HEADING_DEGREES)) * SPACING_M
    per_degree_east = METRES_PER_DEGREE_LONGITUDE_AT_EQUATOR * math.cos(
        math.radians(START_LATITUDE))
    return [Shot(photo,
                 round(START_LATITUDE + index * north / METRES_PER_DEGREE_LATITUDE, 7),
                 round(START_LONGITUDE + index * east / per_degree_east, 7),
                 ALTITUDE_M,
                 START + datetime.timedelta(seconds=index * SECONDS_BETWEEN_SHOTS))
            for index, photo in enumerate(read_truth())]


def _dms(degrees: float) -> tuple[TiffImagePlugin.IFDRational, ...]:
    """Unsigned degrees as EXIF's three rationals: degrees, minutes, seconds."""
    seconds = Fraction(round(abs(degrees) * 3600 * SECONDS_DENOMINATOR), SECONDS_DENOMINATOR)
    whole_degrees, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return tuple(TiffImagePlugin.IFDRational(value.numerator, value.denominator)
                 for value in (Fraction(whole_degrees), Fraction(minutes), seconds))


def exif_block(shot: Shot) -> Image.Exif:
    """What a drone camera writes: make, model, capture time with its offset, GPS."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = CAMERA_MAKE
    exif[ExifTags.Base.Model] = CAMERA_MODEL
    details = exif.get_ifd(ExifTags.IFD.Exif)
    details[ExifTags.Base.DateTimeOriginal] = shot.captured_at.strftime("%Y:%m:%d %H:%M:%S")
    offset = shot.captured_at.strftime("%z")
    details[ExifTags.Base.OffsetTimeOriginal] = f"{offset[:3]}:{offset[3:]}"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSVersionID] = b"\x02\x03\x00\x00"
    gps[ExifTags.GPS.GPSLatitudeRef] = "S" if shot.latitude < 0 else "N"
    gps[ExifTags.GPS.GPSLatitude] = _dms(shot.latitude)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W" if shot.longitude < 0 else "E"
    gps[ExifTags.GPS.GPSLongitude] = _dms(shot.longitude)
    gps[ExifTags.GPS.GPSAltitudeRef] = b"\x00"
    gps[ExifTags.GPS.GPSAltitude] = TiffImagePlugin.IFDRational(round(shot.altitude_m * 100),
                                                                100)
    return exif


def _with_jpeg_exif(data: bytes, exif: bytes) -> bytes:
    """The JPEG with its Exif APP1 segment replaced; every other byte kept."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    segment = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    kept, position, insert_at = [data[:2]], 2, 2
    while position < len(data) and data[position] == 0xFF and data[position + 1] != 0xDA:
        marker = data[position + 1]
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        chunk = data[position:position + 2 + length]
        if not (marker == 0xE1 and chunk[4:10] == b"Exif\x00\x00"):
            kept.append(chunk)
            if marker == 0xE0:  # JFIF must stay first; Exif goes after it.
                insert_at = len(kept)
        position += 2 + length
    kept.insert(insert_at, segment)
    return b"".join(kept) + data[position:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def _with_png_exif(data: bytes, exif: bytes) -> bytes:
    """The PNG with one ``eXIf`` chunk before its image data; every other chunk kept."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    chunks, position, inserted = [data[:8]], 8, False
    while position < len(data):
        length = struct.unpack(">I", data[position:position + 4])[0]
        kind = data[position + 4:position + 8]
        chunk = data[position:position + 12 + length]
        position += 12 + length
        if kind == b"eXIf":
            continue
        if kind == b"IDAT" and not inserted:
            chunks.append(_png_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00")))
            inserted = True
        chunks.append(chunk)
    return b"".join(chunks)


def geotag(path: str, shot: Shot) -> None:
    with open(path, "rb") as handle:
        data = handle.read()
    exif = exif_block(shot).tobytes()
    splice = _with_png_exif if path.lower().endswith(".png") else _with_jpeg_exif
    with open(path, "wb") as handle:
        handle.write(splice(data, exif))


def main(argv: list[str] | None = None) -> None:
    parser = cli.command_parser("pipeline.survey_geotags", __doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=PHOTOS_DIR,
                        help=f"folder of the sample photos (default: {PHOTOS_DIR})")
    args = cli.parse_args(parser, argv)
    for shot in flight():
        geotag(os.path.join(args.photos, shot.photo), shot)
        print(f"{shot.photo:<32} {shot.latitude:.7f} {shot.longitude:.7f} "
              f"{shot.altitude_m} m {shot.captured_at.isoformat()}")


if __name__ == "__main__":
    main()
