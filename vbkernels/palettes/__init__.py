"""Segmentation palettes: built-in Cityscapes, ADE20K and PASCAL VOC, and palette files.

A palette is a class list with one RGB colour per class; the class index is the row. The
built-ins ship as CSV files beside this module, in the same format users can write:

    # any comment line starts with '#'
    # ignore_index: 255
    # ignore_color: 0,0,0
    name,r,g,b
    road,128,64,128
    sidewalk,244,35,232

or the same as JSON: ``{"name": ..., "ignore_index": 255, "ignore_color": [0, 0, 0],
"classes": [{"name": "road", "color": [128, 64, 128]}, ...]}``. ``ignore_index`` is the
label of pixels near no class colour (and of "void" pixels in the dataset's annotations);
``ignore_color`` is the colour such pixels are painted with when labels are encoded.

Built-in conventions (see each CSV's header):
  - ``cityscapes``: the 19 train ids (0 road .. 18 bicycle), ignore 255, painted black.
  - ``ade20k``: SceneParse150's 150 classes (0 wall .. 149 flag; annotation value i+1),
    ignore 255, painted black. road and skyscraper share a colour; ties go to road.
  - ``voc``: PASCAL VOC's 21 classes (0 background, black .. 20 tvmonitor), ignore 255,
    painted (224, 224, 192) like VOC's object borders.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Palette", "BUILTIN_PALETTES", "load_palette", "parse_palette", "palette_to_csv",
           "palette_arguments"]

_HERE = Path(__file__).resolve().parent
BUILTIN_PALETTES = ("cityscapes", "ade20k", "voc")
_MAX_CLASSES = 65535


@dataclass(frozen=True)
class Palette:
    """Class names and colours; ``colors`` is a (K, 3) uint8 CPU tensor, row = class index."""

    name: str
    names: tuple
    colors: torch.Tensor
    ignore_index: int = 255
    ignore_color: tuple = (0, 0, 0)

    def __len__(self) -> int:
        return len(self.names)


def palette_arguments(palette, ignore_index=None, ignore_color=None, *, default_color=None):
    """Split what a caller passed as ``palette`` into ``(colours, ignore_index, ignore_color)``.

    ``palette`` is a :class:`Palette`, a built-in palette's name or a palette file (both
    through :func:`load_palette`, so ``"cityscapes"`` means ``load_palette("cityscapes")``),
    or anything (K, 3) (tensor, array, nested lists). The explicit
    ``ignore_index``/``ignore_color`` arguments win; ``None`` means the Palette's own, else
    255 and ``default_color`` (``None``: no ignore colour).
    """
    if isinstance(palette, (str, Path)):
        palette = load_palette(palette)
    if isinstance(palette, Palette):
        colours = palette.colors
        default_index, default_color = palette.ignore_index, palette.ignore_color
    else:
        colours, default_index = palette, 255
    return (colours,
            default_index if ignore_index is None else ignore_index,
            default_color if ignore_color is None else ignore_color)


def load_palette(spec) -> Palette:
    """A built-in palette by name (``cityscapes``, ``ade20k``, ``voc``) or a ``.csv``/``.json``
    palette file; a :class:`Palette` passes through. Bad files raise ``ValueError`` naming
    the file and what is wrong."""
    if isinstance(spec, Palette):
        return spec
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"palette must be a name or a path, got {type(spec).__name__}")
    if isinstance(spec, str) and spec.lower() in BUILTIN_PALETTES:
        path = _HERE / f"{spec.lower()}.csv"
        return parse_palette(path.read_text(encoding="utf-8"), fmt="csv", name=spec.lower())
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"palette must be one of {BUILTIN_PALETTES} or an existing .csv/.json file, "
            f"got {str(spec)!r}")
    fmt = "json" if path.suffix.lower() == ".json" else "csv"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"palette file {str(path)!r} cannot be read: {exc}") from None
    try:
        return parse_palette(text, fmt=fmt, name=path.stem)
    except ValueError as exc:
        raise ValueError(f"palette file {str(path)!r}: {exc}") from None


def parse_palette(text: str, *, fmt: str = "csv", name: str = "custom") -> Palette:
    """Build a :class:`Palette` from the text of a CSV or JSON palette file."""
    if fmt == "json":
        names, colors, meta = _parse_json(text)
    elif fmt == "csv":
        names, colors, meta = _parse_csv(text)
    else:
        raise ValueError(f"fmt must be 'csv' or 'json', got {fmt!r}")
    if not 1 <= len(names) <= _MAX_CLASSES:
        raise ValueError(f"a palette holds 1..{_MAX_CLASSES} classes, this one has {len(names)}")
    ignore_index = _as_int(meta.get("ignore_index", 255), "ignore_index")
    if 0 <= ignore_index < len(names):
        raise ValueError(
            f"ignore_index {ignore_index} is a class index (0..{len(names) - 1}); pick another")
    ignore_color = tuple(_as_channel(v, "ignore_color") for v in _as_triple(
        meta.get("ignore_color", (0, 0, 0)), "ignore_color"))
    return Palette(
        name=str(meta.get("name", name)),
        names=tuple(names),
        colors=torch.tensor(colors, dtype=torch.uint8).reshape(-1, 3),
        ignore_index=ignore_index,
        ignore_color=ignore_color,
    )


def palette_to_csv(palette: Palette) -> str:
    """The CSV text of ``palette`` (what :func:`parse_palette` reads back)."""
    out = io.StringIO()
    out.write(f"# ignore_index: {palette.ignore_index}\n")
    out.write("# ignore_color: {},{},{}\n".format(*palette.ignore_color))
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "r", "g", "b"])
    for class_name, color in zip(palette.names, palette.colors.tolist()):
        writer.writerow([class_name] + color)
    return out.getvalue()


def _parse_csv(text: str):
    meta, body = {}, []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            key, sep, value = stripped[1:].partition(":")
            if sep and key.strip() in ("ignore_index", "ignore_color", "name"):
                meta[key.strip()] = value.strip()
        elif stripped:
            body.append(line)
    rows = list(csv.reader(body))
    if rows and [cell.strip().lower() for cell in rows[0]] == ["name", "r", "g", "b"]:
        rows = rows[1:]
    names, colors = [], []
    for number, row in enumerate(rows, start=1):
        if len(row) != 4:
            raise ValueError(f"row {number} must be 'name,r,g,b', got {','.join(row)!r}")
        names.append(_as_name(row[0], number))
        colors.append([_as_channel(v, f"row {number}") for v in row[1:]])
    if isinstance(meta.get("ignore_color"), str):
        meta["ignore_color"] = meta["ignore_color"].split(",")
    return names, colors, meta


def _parse_json(text: str):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ValueError('expected an object with a "classes" list of {"name", "color"}')
    names, colors = [], []
    for number, entry in enumerate(data["classes"], start=1):
        if not isinstance(entry, dict) or "name" not in entry or "color" not in entry:
            raise ValueError(f'class {number} must be {{"name": ..., "color": [r, g, b]}}')
        names.append(_as_name(entry["name"], number))
        colors.append([_as_channel(v, f"class {number}") for v in _as_triple(
            entry["color"], f"class {number} color")])
    return names, colors, data


def _as_name(value, number: int) -> str:
    name = str(value).strip()
    if not name:
        raise ValueError(f"class {number} has an empty name")
    return name


def _as_triple(value, what: str):
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f"{what} must be three channel values r,g,b, got {value!r}")
    return value


def _as_int(value, what: str) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if not number.is_integer():
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(number)


def _as_channel(value, what: str) -> int:
    channel = _as_int(value, what)
    if not 0 <= channel <= 255:
        raise ValueError(f"{what}: colour channels must be integers in 0..255, got {value!r}")
    return channel
