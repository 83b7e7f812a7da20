"""Ground sampling distance: how many millimetres of the surface one pixel of a photo covers.

Inspection manuals grade cracks by width in millimetres (hairline below about 0.1-0.2 mm;
0.3 mm and more in reinforced concrete calls for action), so a width in pixels is useful only
with the photo's scale. For a camera looking straight at a flat surface the scale is

    GSD = sensor_width_mm * distance_mm / (focal_length_mm * image_width_px)

The user may know it (``--gsd-mm``: a fixed rig, a measured stand-off). Otherwise it comes
from the photo: the focal length from EXIF, the sensor width from the table below (or the
focal-plane resolution the camera wrote), and the distance as a DJI drone's height above its
take-off point for a nadir shot (gimbal pitched within ``NADIR_TOLERANCE_DEG`` of straight
down). That assumes the surface is level with the take-off point: take off from the deck, or
give ``--gsd-mm``. An oblique shot of a wall, an unknown camera or a missing height leaves the
GSD empty with the reason: a wrong scale would grade a crack, so nothing is guessed.
"""
from __future__ import annotations

from typing import NamedTuple

from crackscan.photo_metadata import PhotoMetadata

FLAG, EXIF = "flag", "exif"
# Why a photo has no GSD, in the order they are checked; each is counted in summary.json.
NO_EXIF = "no_exif"
NO_FOCAL_LENGTH = "no_focal_length"
UNKNOWN_CAMERA = "unknown_camera"
NO_ALTITUDE = "no_altitude"
NO_GIMBAL_PITCH = "no_gimbal_pitch"
OBLIQUE = "oblique"
REASONS = (NO_EXIF, NO_FOCAL_LENGTH, UNKNOWN_CAMERA, NO_ALTITUDE, NO_GIMBAL_PITCH, OBLIQUE)
NADIR_PITCH_DEG = -90.0
# Tilted 10 degrees, the centre of the frame is 1.5% further than the altitude (1/cos 10)
# and the scale starts to vary across the frame; tilted more, the altitude is not the
# distance to the surface.
NADIR_TOLERANCE_DEG = 10.0
# A payload with several cameras writes one EXIF model for all of them: its entry holds only
# for the focal length it names, within this share (the zoom's focal lengths are far off).
FOCAL_TOLERANCE = 0.05
# 1e-5 mm, a hundredth of a micrometre: below every rounding of its inputs.
GSD_DECIMALS = 5
COLUMNS = ("gsd_mm", "gsd_source", "gsd_missing")
TEXT_COLUMNS = frozenset({"gsd_source", "gsd_missing"})


class Camera(NamedTuple):
    sensor_width_mm: float
    # The focal length of the one camera of a multi-camera payload this entry is for; None
    # where the EXIF model names a single sensor (whatever lens is on it).
    focal_length_mm: float | None = None


# (EXIF make, EXIF model), lower case -> the sensor's long side. The spec sheets give a
# sensor format; its nominal active area gives the width: "1-inch type" 13.2 x 8.8 mm,
# "1/2-inch" 6.4 x 4.8, "1/2.3-inch" 6.17 x 4.55, Four Thirds 17.3 x 13.0 (the widths camera
# databases list for such sensors, e.g. OpenSfM's opensfm/data/sensor_data.json: 13.2 for
# the 1-inch Canon G7 X, 6.4 for 1/2-inch, 6.16-6.17 for 1/2.3-inch compacts).
CAMERAS: dict[tuple[str, str], Camera] = {
    # Phantom 4 Pro, Pro V2.0, RTK: "1'' CMOS, effective pixels 20M, 5472x3648", 8.8 mm lens
    # (dji.com/phantom-4-pro/info, dji.com/phantom-4-pro-v2/info, dji.com/phantom-4-rtk/info).
    ("dji", "fc6310"): Camera(13.2),
    ("dji", "fc6310s"): Camera(13.2),
    ("dji", "fc6310r"): Camera(13.2),
    # Mavic 2 Pro, Hasselblad L1D-20c: "1'' CMOS, 20 MP" (dji.com/mavic-2/info).
    ("hasselblad", "l1d-20c"): Camera(13.2),
    # Mavic 3 Enterprise wide camera: "4/3 CMOS, 20 MP", 12.29 mm (24 mm equivalent); its
    # tele camera writes the same model (dji.com/mavic-3-enterprise/specs).
    ("dji", "m3e"): Camera(17.3, 12.29),
    # Matrice 30 / 30T wide camera: "1/2'' CMOS, 12 MP", 4.5 mm (24 mm equivalent); the zoom
    # and thermal cameras write the same model (dji.com/matrice-30/specs).
    ("dji", "m30"): Camera(6.4, 4.5),
    ("dji", "m30t"): Camera(6.4, 4.5),
    # Zenmuse H20 / H20T wide camera: "1/2.3'' CMOS, 12 MP", 4.5 mm; the zoom and thermal
    # cameras write the same model (dji.com/zenmuse-h20-series/specs).
    ("dji", "zh20"): Camera(6.17, 4.5),
    ("dji", "zh20t"): Camera(6.17, 4.5),
    # Zenmuse P1: "sensor size (still) 35.9 x 24 mm (full frame)", 24, 35 or 50 mm lenses
    # (dji.com/zenmuse-p1/specs).
    ("dji", "zenmusep1"): Camera(35.9),
    # Sony RX1R II: "35 mm full frame (35.9 x 24.0 mm) Exmor R CMOS", fixed 35 mm lens
    # (Sony DSC-RX1RM2 specifications, sony.com).
    ("sony", "dsc-rx1rm2"): Camera(35.9),
}


class GroundSampling(NamedTuple):
    """The photo's GSD and where it came from, or None and why there is none."""

    gsd_mm: float | None = None
    source: str | None = None
    missing: str | None = None

    def columns(self) -> dict[str, float | str | None]:
        return {"gsd_mm": self.gsd_mm, "gsd_source": self.source, "gsd_missing": self.missing}


def _missing(reason: str) -> GroundSampling:
    return GroundSampling(missing=reason)


def sensor_width_mm(metadata: PhotoMetadata, image_width_px: int) -> float | None:
    """The sensor's long side: from the table for a known camera, else from the focal-plane
    resolution the camera wrote (which holds for the photo at the size the camera saved it)."""
    key = ((metadata.camera_make or "").strip().lower(),
           (metadata.camera_model or "").strip().lower())
    camera = CAMERAS.get(key)
    if camera is not None and metadata.focal_length_mm is not None and (
            camera.focal_length_mm is None
            or abs(metadata.focal_length_mm / camera.focal_length_mm - 1) <= FOCAL_TOLERANCE):
        return camera.sensor_width_mm
    if metadata.focal_plane_px_per_mm is not None:
        return image_width_px / metadata.focal_plane_px_per_mm
    return None


def ground_sampling(metadata: PhotoMetadata, width: int, height: int,
                    gsd_mm: float | None = None) -> GroundSampling:
    """The GSD of a photo of ``width`` x ``height`` pixels (after EXIF rotation): ``gsd_mm``
    when the user gave one, else from its metadata, else the first reason it cannot be known.

    Sensors are wider than tall and a turned photo keeps its pixels, so the sensor's width
    spans the photo's long side, whichever way up it was saved.
    """
    if gsd_mm is not None:
        return GroundSampling(gsd_mm, FLAG)
    if (metadata.camera_make, metadata.camera_model, metadata.focal_length_mm) == (
            None, None, None):
        return _missing(NO_EXIF)
    if metadata.focal_length_mm is None:
        return _missing(NO_FOCAL_LENGTH)
    long_side = max(width, height)
    sensor = sensor_width_mm(metadata, long_side)
    if sensor is None:
        return _missing(UNKNOWN_CAMERA)
    altitude = metadata.relative_altitude_m
    if altitude is None or altitude <= 0:
        return _missing(NO_ALTITUDE)
    if metadata.gimbal_pitch_deg is None:
        return _missing(NO_GIMBAL_PITCH)
    if abs(metadata.gimbal_pitch_deg - NADIR_PITCH_DEG) > NADIR_TOLERANCE_DEG:
        return _missing(OBLIQUE)
    gsd = sensor * altitude * 1000.0 / (metadata.focal_length_mm * long_side)
    return GroundSampling(round(gsd, GSD_DECIMALS), EXIF)
