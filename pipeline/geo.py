"""Where each scored photo was taken, as files GIS tools open: GeoJSON and KML.

Inspection teams load a night's verdicts into QGIS, ArcGIS or Google Earth beside the
structure's drawings; a list of 300 cracked file names cannot say where on the bridge they
are, a map can. One point per geotagged photo, from the position its camera wrote into the
EXIF; photos without a position are in the predictions, not on the map.

Both files are written whole by the run's closing step, after every verdict is known: a
FeatureCollection is one JSON document, so it cannot be appended shard by shard.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator
from xml.sax.saxutils import escape

from pipeline.records import MEASUREMENT_COLUMNS

GEOJSON_FILE, KML_FILE = "cracks.geojson", "cracks.kml"
# KML colours are aabbggrr: opaque red-orange for a crack, green for an intact surface.
KML_COLORS = {"crack": "ff0f48d9", "intact": "ff3e8a2b"}
# A flat earth near one spot: metres per degree of latitude, and of longitude at the
# equator (times the cosine of the latitude elsewhere); within 0.5% over the whole globe,
# and what both the sample flight and the report's map measure distances with.
METRES_PER_DEGREE_LATITUDE = 110_574.0
METRES_PER_DEGREE_LONGITUDE_AT_EQUATOR = 111_320.0
# The crack's length and widths (pixels, and millimetres where the GSD is known; empty where
# no crack was measured) let a GIS user colour the map by width.
POINT_FIELDS = ("uri", "label", "crack_probability", "tiles", "positive_tiles",
                "captured_at", "altitude_m", "camera_model", *MEASUREMENT_COLUMNS)


def point_of(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The row's map point (latitude, longitude and what a map shows about it), if it has one.

    Rows written before positions were read have no coordinates at all; both cases are the
    same to a map."""
    latitude, longitude = row.get("latitude"), row.get("longitude")
    if latitude is None or longitude is None:
        return
    point = {field: row.get(field) for field in POINT_FIELDS}
    yield point | {"latitude": float(latitude), "longitude": float(longitude)}


def _ordered(points: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """In flight order where times are known, by uri otherwise: the same every run."""
    return sorted(points, key=lambda p: (p.get("captured_at") or "", p["uri"]))


def geojson(points: Iterable[dict[str, Any]]) -> str:
    """An RFC 7946 FeatureCollection: coordinates are longitude, latitude[, altitude]."""
    features = []
    for point in _ordered(points):
        coordinates = [point["longitude"], point["latitude"]]
        if point.get("altitude_m") is not None:
            coordinates.append(point["altitude_m"])
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": coordinates},
            "properties": {field: point.get(field) for field in POINT_FIELDS
                           if field != "altitude_m"},
        })
    return json.dumps({"type": "FeatureCollection", "features": features},
                      ensure_ascii=False, indent=1) + "\n"


def _placemark(point: dict[str, Any], positive_class: str) -> str:
    style = "crack" if point.get("label") == positive_class else "intact"
    coordinates = f"{point['longitude']!r},{point['latitude']!r}"
    if point.get("altitude_m") is not None:
        coordinates += f",{float(point['altitude_m'])!r}"
    description = (f"{point.get('label')}: crack probability "
                   f"{float(point['crack_probability']):.3f}, {point.get('positive_tiles')} of "
                   f"{point.get('tiles')} tiles positive")
    measured = {name: point[name] for name in MEASUREMENT_COLUMNS
                if point.get(name) is not None}
    if measured:
        description += "; " + ", ".join(f"{name.replace('_', ' ')} {value:g}"
                                        for name, value in measured.items())
    # Google Earth and QGIS read ExtendedData as the placemark's attributes.
    data = "".join(f'<Data name="{name}"><value>{float(value)!r}</value></Data>'
                   for name, value in measured.items())
    extended = f"<ExtendedData>{data}</ExtendedData>" if data else ""
    when = (f"<TimeStamp><when>{escape(point['captured_at'])}</when></TimeStamp>"
            if point.get("captured_at") else "")
    # The altitude in EXIF is above sea level, which is what absolute mode means to KML.
    mode = "<altitudeMode>absolute</altitudeMode>" if point.get("altitude_m") is not None else ""
    return (f"<Placemark><name>{escape(point['uri'])}</name>"
            f"<description>{escape(description)}</description>{when}"
            f"<styleUrl>#{style}</styleUrl>{extended}"
            f"<Point>{mode}<coordinates>{coordinates}</coordinates></Point></Placemark>")


def kml(points: Iterable[dict[str, Any]], positive_class: str) -> str:
    """The same points as :func:`geojson`, as a KML 2.2 document coloured by verdict."""
    styles = "".join(
        f'<Style id="{name}"><IconStyle><color>{color}</color><scale>0.8</scale>'
        f"<Icon><href>http://maps.google.com/mapfiles/kml/shapes/shaded_dot.png</href></Icon>"
        f"</IconStyle></Style>" for name, color in KML_COLORS.items())
    placemarks = "\n".join(_placemark(point, positive_class) for point in _ordered(points))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
            f"<name>crackscan verdicts</name>{styles}\n{placemarks}\n</Document></kml>\n")
