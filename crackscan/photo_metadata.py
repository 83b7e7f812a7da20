"""Where, when and with what a photo was taken, from the EXIF and XMP its camera wrote.

An inspector acts on a cracked photo by going back to the spot: the verdict row needs the
photo's position, the time of the flight and the camera (and, for DJI drones, which way the
gimbal pointed). The lens's focal length, the sensor's focal-plane resolution and a DJI
drone's height above its take-off point are read too: with them ``crackscan.gsd`` turns
pixels into millimetres. Cameras and editing tools write this metadata carelessly: wrong types,
rationals over zero, degrees off the globe, dates that are blanks. Metadata only describes a
photo, so a value that cannot be trusted becomes None with a warning naming the field and
the problem, and never costs the photo its verdict: nothing here raises.
"""
from __future__ import annotations

import datetime
import math
import re
import warnings
from typing import Any, Callable, NamedTuple

from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

GPS_LATITUDE_REF, GPS_LATITUDE = 0x0001, 0x0002
GPS_LONGITUDE_REF, GPS_LONGITUDE = 0x0003, 0x0004
GPS_ALTITUDE_REF, GPS_ALTITUDE = 0x0005, 0x0006
MAKE, MODEL, DATE_TIME = 0x010F, 0x0110, 0x0132
DATE_TIME_ORIGINAL, OFFSET_TIME, OFFSET_TIME_ORIGINAL = 0x9003, 0x9010, 0x9011
FOCAL_LENGTH = 0x920A
FOCAL_PLANE_X_RESOLUTION, FOCAL_PLANE_RESOLUTION_UNIT = 0xA20E, 0xA210
# Millimetres per FocalPlaneResolutionUnit: EXIF 2.3 defines 2 (inch, its default) and 3
# (centimetre); 4 (millimetre) and 5 (micrometre) are TIFF/EP's, which some cameras write.
FOCAL_PLANE_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}
# Above any drone's ceiling, and below any take-off point's depth.
RELATIVE_ALTITUDE_LIMIT_M = 10_000.0
TIFF_XMP = 700
# EXIF's own layout, "YYYY:MM:DD HH:MM:SS"; dashes and a "T" are what editing tools write.
EXIF_DATE = re.compile(r"^(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
EXIF_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
# Digits past these are division noise of the rationals, not precision: 1e-7 degrees is
# about a centimetre, 1e-3 m a millimetre.
DEGREE_DECIMALS, METRE_DECIMALS = 7, 3


class PhotoMetadata(NamedTuple):
    """A photo's position, capture time, camera and gimbal; None where unknown or untrusted.

    ``captured_at`` is ISO 8601 local time as the camera wrote it, with its UTC offset when
    the camera recorded one. ``warnings`` names every value that was present but refused.
    """

    latitude: float | None = None
    longitude: float | None = None
    altitude_m: float | None = None
    captured_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    gimbal_yaw_deg: float | None = None
    gimbal_pitch_deg: float | None = None
    focal_length_mm: float | None = None
    focal_plane_px_per_mm: float | None = None
    relative_altitude_m: float | None = None
    warnings: tuple[str, ...] = ()

    def columns(self) -> dict[str, float | str | None]:
        return {name: getattr(self, name) for name in COLUMNS}


# What the ground sampling distance is computed from (``crackscan.gsd``); the row carries
# that distance, not these.
GEOMETRY_FIELDS = frozenset({"focal_length_mm", "focal_plane_px_per_mm", "relative_altitude_m"})
# The prediction row's columns, in this order; every one may be None.
COLUMNS = tuple(name for name in PhotoMetadata._fields
                if name != "warnings" and name not in GEOMETRY_FIELDS)
TEXT_COLUMNS = frozenset({"captured_at", "camera_make", "camera_model"})


class _Malformed(ValueError):
    """One value cannot be trusted; the message names it and says why."""


def read_metadata(image: Image.Image) -> PhotoMetadata:
    """The metadata of an opened image; never raises. A PNG may keep its EXIF after the
    pixels, where Pillow finds it only once they are loaded (``decode_photo`` loads them
    first, so that a broken photo fails for its pixels, not here)."""
    problems: list[str] = []
    with warnings.catch_warnings():
        # Pillow warns about corrupt EXIF without naming the file; what it means for a
        # field is reported below, as that field's warning.
        warnings.simplefilter("ignore")
        exif = _guarded(problems, "EXIF", image.getexif)
        gps = _guarded(problems, "GPS block",
                       lambda: _block(exif, ExifTags.IFD.GPSInfo, "GPS"))
        details = _guarded(problems, "Exif block",
                           lambda: _block(exif, ExifTags.IFD.Exif, "Exif"))
        gps, details = gps or {}, details or {}
        xmp = _guarded(problems, "XMP", lambda: _xmp(image)) or b""
        values = {
            "latitude": _guarded(problems, "GPS latitude", lambda: _coordinate(
                gps, GPS_LATITUDE, GPS_LATITUDE_REF, "latitude", "NS", 90.0)),
            "longitude": _guarded(problems, "GPS longitude", lambda: _coordinate(
                gps, GPS_LONGITUDE, GPS_LONGITUDE_REF, "longitude", "EW", 180.0)),
            "altitude_m": _guarded(problems, "GPS altitude", lambda: _altitude(gps)),
            "captured_at": _guarded(problems, "capture time",
                                    lambda: _captured_at(exif or {}, details, problems)),
            "camera_make": _guarded(problems, "camera make",
                                    lambda: _text(exif or {}, MAKE, "camera make")),
            "camera_model": _guarded(problems, "camera model",
                                     lambda: _text(exif or {}, MODEL, "camera model")),
            "gimbal_yaw_deg": _guarded(problems, "gimbal yaw",
                                       lambda: _dji(xmp, "GimbalYawDegree", 360.0)),
            "gimbal_pitch_deg": _guarded(problems, "gimbal pitch",
                                         lambda: _dji(xmp, "GimbalPitchDegree", 180.0)),
            "focal_length_mm": _guarded(problems, "focal length",
                                        lambda: _focal_length(details)),
            "focal_plane_px_per_mm": _guarded(problems, "focal plane resolution",
                                              lambda: _focal_plane(details)),
            "relative_altitude_m": _guarded(problems, "relative altitude", lambda: _dji(
                xmp, "RelativeAltitude", RELATIVE_ALTITUDE_LIMIT_M, "metres")),
        }
    return PhotoMetadata(**values, warnings=tuple(problems))


def _guarded(problems: list[str], what: str, read: Callable[[], Any]) -> Any:
    """``read()``, or None with the reason added to ``problems``: one bad value must not
    cost the others, nor the photo."""
    try:
        return read()
    except _Malformed as exc:
        problems.append(str(exc))
    except Exception as exc:
        problems.append(f"{what} is unreadable: {type(exc).__name__}: {exc}")
    return None


def _block(exif: Image.Exif | None, pointer: int, name: str) -> dict[int, Any]:
    """A sub-directory of the EXIF (GPS, Exif), empty when the photo has none."""
    if exif is None or pointer not in exif:
        return {}
    raw = exif[pointer]
    if not isinstance(raw, (int, dict)) or isinstance(raw, bool):
        raise _Malformed(f"{name} block (EXIF tag {pointer:#06x}) is a "
                         f"{type(raw).__name__}, not a directory")
    block = exif.get_ifd(pointer)
    if not isinstance(block, dict):
        raise _Malformed(f"{name} block is a {type(block).__name__}, not a directory")
    if not block:
        raise _Malformed(f"{name} block at offset {raw} is empty or outside the EXIF data")
    return block


def _number(value: Any, what: str) -> float:
    if isinstance(value, IFDRational) and value.denominator == 0:
        raise _Malformed(f"{what} is a rational with a zero denominator "
                         f"({value.numerator}/0)")
    if isinstance(value, bool) or not isinstance(value, (int, float, IFDRational)):
        raise _Malformed(f"{what} {value!r:.40} is not a number ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise _Malformed(f"{what} is {number}, not a finite number")
    return number


def _reference(value: Any) -> str:
    """A GPS reference letter; Pillow gives ASCII as str, some writers give bytes."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.strip("\x00 ").upper() if isinstance(value, str) else ""


def _coordinate(gps: dict[int, Any], tag: int, ref_tag: int, what: str, refs: str,
                limit: float) -> float | None:
    """Signed decimal degrees from EXIF's unsigned degrees, minutes, seconds and a
    hemisphere letter; without the letter the sign is unknown, and a mirrored position is
    worse than none."""
    if tag not in gps:
        return None
    parts = gps[tag]
    parts = parts if isinstance(parts, tuple) else (parts,)
    if not 1 <= len(parts) <= 3:
        raise _Malformed(f"GPS {what} has {len(parts)} parts, not degrees, minutes, seconds")
    numbers = [_number(part, f"GPS {what}") for part in parts]
    if any(number < 0 for number in numbers):
        raise _Malformed(f"GPS {what} {numbers} is negative; EXIF gives the hemisphere "
                         f"by its reference letter")
    degrees = sum(number / 60 ** index for index, number in enumerate(numbers))
    if degrees > limit:
        raise _Malformed(f"GPS {what} {degrees:g} is out of range (at most {limit:g} degrees)")
    reference = _reference(gps.get(ref_tag))
    if len(reference) != 1 or reference not in refs:
        raise _Malformed(f"GPS {what} reference {gps.get(ref_tag)!r} is not {refs[0]} or "
                         f"{refs[1]}: the hemisphere is unknown")
    return round(-degrees if reference == refs[1] else degrees, DEGREE_DECIMALS)


def _altitude(gps: dict[int, Any]) -> float | None:
    """Metres above sea level; reference 1 means below (EXIF 2.3), as in a mine or a tunnel."""
    if GPS_ALTITUDE not in gps:
        return None
    metres = _number(gps[GPS_ALTITUDE], "GPS altitude")
    reference = gps.get(GPS_ALTITUDE_REF, 0)
    if isinstance(reference, bytes):
        reference = reference[0] if len(reference) == 1 else reference
    if isinstance(reference, tuple) and len(reference) == 1:
        reference = reference[0]
    if reference not in (0, 1):
        raise _Malformed(f"GPS altitude reference {reference!r} is not 0 (above sea level) "
                         f"or 1 (below)")
    return round(-metres if reference == 1 else metres, METRE_DECIMALS)


def _ascii(value: Any, what: str) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise _Malformed(f"{what} {value!r:.40} is not text ({type(value).__name__})")
    # Cameras pad fixed-size fields with NULs and spaces.
    return value.split("\x00", 1)[0].strip() or None


def _text(exif: Image.Exif | dict[int, Any], tag: int, what: str) -> str | None:
    return _ascii(exif[tag], what) if tag in exif else None


def _captured_at(exif: Image.Exif | dict[int, Any], details: dict[int, Any],
                 problems: list[str]) -> str | None:
    """ISO 8601 of DateTimeOriginal (the shutter), else DateTime (the file's last change),
    with the offset recorded beside it; naive when the camera recorded none, or one that is
    not an offset (the time itself is still good: it is kept, and the offset reported)."""
    candidates = ((details.get(DATE_TIME_ORIGINAL), (OFFSET_TIME_ORIGINAL, OFFSET_TIME)),
                  (exif.get(DATE_TIME), (OFFSET_TIME, OFFSET_TIME_ORIGINAL)))
    for stamp, offsets in candidates:
        text = None if stamp is None else _ascii(stamp, "capture time")
        # Blanks or zeros in the date's layout are how EXIF writes "unknown".
        if text is not None and text.strip(" :0"):
            return _with_offset(_moment(text), details, offsets, problems)
    return None


def _moment(text: str) -> datetime.datetime:
    match = EXIF_DATE.match(text)
    if match:
        try:
            return datetime.datetime(*(int(part) for part in match.groups()))
        except ValueError:  # February 30th and the like
            pass
    raise _Malformed(f"capture time {text!r:.40} is not a date and time like "
                     f"2026:11:30 21:14:05")


def _with_offset(moment: datetime.datetime, details: dict[int, Any],
                 offsets: tuple[int, int], problems: list[str]) -> str:
    tag = next((tag for tag in offsets if tag in details), None)
    if tag is None:
        return moment.isoformat()
    text = details[tag]
    match = EXIF_OFFSET.match(text.strip("\x00 ")) if isinstance(text, str) else None
    if not match or int(match[2]) > 14 or int(match[3]) > 59:
        problems.append(f"capture time offset {text!r:.40} is not a UTC offset like +01:00; "
                        f"the capture time is kept without it")
        return moment.isoformat()
    sign = -1 if match[1] == "-" else 1
    zone = datetime.timezone(sign * datetime.timedelta(hours=int(match[2]),
                                                       minutes=int(match[3])))
    return moment.replace(tzinfo=zone).isoformat()


def _xmp(image: Image.Image) -> bytes:
    """The raw XMP packet: JPEG, WebP and HEIF put it in ``info``, PNG in an iTXt chunk,
    TIFF in tag 700. Read as bytes, not through ``getxmp()``, which needs defusedxml."""
    for key in ("xmp", "XML:com.adobe.xmp"):
        packet = image.info.get(key)
        if packet:
            return packet.encode("utf-8") if isinstance(packet, str) else bytes(packet)
    tags = getattr(image, "tag_v2", None)
    packet = tags.get(TIFF_XMP) if tags is not None else None
    return bytes(packet) if isinstance(packet, (bytes, bytearray)) else b""


def _positive(details: dict[int, Any], tag: int, what: str) -> float | None:
    """A length or resolution: zero is how some cameras write "unknown", and is refused."""
    if tag not in details:
        return None
    number = _number(details[tag], what)
    if number <= 0:
        raise _Malformed(f"{what} {number:g} is not positive")
    return number


def _focal_length(details: dict[int, Any]) -> float | None:
    return _positive(details, FOCAL_LENGTH, "focal length")


def _focal_plane(details: dict[int, Any]) -> float | None:
    """Pixels per millimetre on the sensor, from FocalPlaneXResolution in its unit (an inch
    where the unit is not written, as EXIF defines)."""
    per_unit = _positive(details, FOCAL_PLANE_X_RESOLUTION, "focal plane X resolution")
    if per_unit is None:
        return None
    unit = details.get(FOCAL_PLANE_RESOLUTION_UNIT, 2)
    if unit not in FOCAL_PLANE_UNIT_MM:
        raise _Malformed(f"focal plane resolution unit {unit!r:.40} is not 2 (inch), 3 (cm), "
                         f"4 (mm) or 5 (um)")
    return per_unit / FOCAL_PLANE_UNIT_MM[unit]


def _dji(xmp: bytes, name: str, limit: float, unit: str = "degrees") -> float | None:
    """A DJI flight value (gimbal angle, relative altitude), written as an attribute or an
    element of the XMP description."""
    quoted = re.escape(f"drone-dji:{name}").encode()
    match = (re.search(rb"\b" + quoted + rb"\s*=\s*[\"']([^\"']*)[\"']", xmp)
             or re.search(rb"<" + quoted + rb">\s*([^<]*?)\s*</" + quoted + rb">", xmp))
    if match is None:
        return None
    text = match[1].decode("utf-8", "replace").strip()
    what = f"DJI {name}"
    try:
        value = float(text)
    except ValueError:
        raise _Malformed(f"{what} {text!r:.40} is not a number") from None
    if not math.isfinite(value) or abs(value) > limit:
        raise _Malformed(f"{what} {text} is out of range (at most {limit:g} {unit} either way)")
    return value
