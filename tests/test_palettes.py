"""Built-in palettes and the palette file formats (vbkernels.palettes)."""

import json

import pytest
import torch

import vbkernels
from vbkernels.palettes import BUILTIN_PALETTES, load_palette, palette_to_csv, parse_palette


@pytest.mark.parametrize("name, size, ignore_color, known", [
    ("cityscapes", 19, (0, 0, 0),
     {0: ("road", (128, 64, 128)), 13: ("car", (0, 0, 142)), 18: ("bicycle", (119, 11, 32))}),
    ("voc", 21, (224, 224, 192),
     {0: ("background", (0, 0, 0)), 15: ("person", (192, 128, 128)),
      20: ("tvmonitor", (0, 64, 128))}),
    ("ade20k", 150, (0, 0, 0),
     {0: ("wall", (120, 120, 120)), 7: ("bed", (204, 5, 255)), 149: ("flag", (92, 0, 255))}),
])
def test_builtin_palettes(name, size, ignore_color, known):
    palette = load_palette(name)
    assert len(palette) == size and palette.colors.shape == (size, 3)
    assert palette.colors.dtype == torch.uint8
    assert palette.ignore_index == 255 and palette.ignore_color == ignore_color
    for index, (class_name, colour) in known.items():
        assert palette.names[index] == class_name
        assert tuple(palette.colors[index].tolist()) == colour
    assert len(set(palette.names)) == size
    assert load_palette(name.upper()).names == palette.names


def test_builtin_colours_are_distinct_except_ade20k_road_skyscraper():
    for name in BUILTIN_PALETTES:
        colours = [tuple(c) for c in load_palette(name).colors.tolist()]
        duplicates = {c for c in colours if colours.count(c) > 1}
        assert duplicates == ({(140, 140, 140)} if name == "ade20k" else set())
    ade = load_palette("ade20k")
    assert ade.names[6] == "road" and ade.names[48] == "skyscraper"


@pytest.mark.parametrize("name", BUILTIN_PALETTES)
def test_builtin_palette_decodes_its_own_encoding_exactly(name):
    palette = load_palette(name)
    labels = torch.arange(len(palette)).reshape(1, -1).repeat(3, 1)
    rgb = vbkernels.encode_segmentation(labels, palette.colors, ignore_color=palette.ignore_color)
    decoded = vbkernels.decode_segmentation(rgb, palette.colors, ignore_index=palette.ignore_index)
    expected = labels.clone()
    if name == "ade20k":
        expected[labels == 48] = 6  # same colour as road; ties go to the lower index
    assert torch.equal(decoded, expected)


def test_csv_file_round_trip(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("# my classes\n# ignore_index: 7\n# ignore_color: 1,2,3\n"
                    'name,r,g,b\nsky,0,0,255\n"tree, big",0,128,0\n')
    palette = load_palette(path)
    assert palette.names == ("sky", "tree, big") and palette.name == "mine"
    assert palette.colors.tolist() == [[0, 0, 255], [0, 128, 0]]
    assert palette.ignore_index == 7 and palette.ignore_color == (1, 2, 3)
    again = parse_palette(palette_to_csv(palette))
    assert again.names == palette.names and torch.equal(again.colors, palette.colors)
    assert again.ignore_index == 7 and again.ignore_color == (1, 2, 3)


def test_csv_without_header_uses_defaults(tmp_path):
    path = tmp_path / "bare.csv"
    path.write_text("background,0,0,0\nfg,255,255,255\n")
    palette = load_palette(str(path))
    assert palette.names == ("background", "fg")
    assert palette.ignore_index == 255 and palette.ignore_color == (0, 0, 0)


def test_json_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"ignore_index": 99, "ignore_color": [9, 9, 9], "classes": [
        {"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [4, 5, 6]}]}))
    palette = load_palette(path)
    assert palette.names == ("a", "b") and palette.colors.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert palette.ignore_index == 99 and palette.ignore_color == (9, 9, 9)


@pytest.mark.parametrize("text, message", [
    ("a,0,0,256\n", "0..255"),
    ("a,0,0\n", "name,r,g,b"),
    ("a,0,0,1.5\n", "integer"),
    (",0,0,0\n", "empty name"),
    ("name,r,g,b\n", "1..65535"),
    ("# ignore_index: 0\na,0,0,0\n", "ignore_index"),
])
def test_bad_csv_names_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_palette(path)
    assert "bad.csv" in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("{not json", "JSON"),
    ('{"classes": [{"name": "a"}]}', "color"),
    ('{"classes": [{"name": "a", "color": [1, 2]}]}', "three"),
])
def test_bad_json(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_palette(path)


def test_unknown_palette_name():
    with pytest.raises(ValueError, match="cityscapes"):
        load_palette("no-such-palette")
    with pytest.raises(TypeError, match="palette"):
        load_palette(3)


def test_palette_arguments_explicit_wins_then_palette_then_defaults():
    from vbkernels.palettes import palette_arguments

    voc = load_palette("voc")
    colours, index, colour = palette_arguments(voc)
    assert colours is voc.colors and index == 255 and colour == (224, 224, 192)
    assert palette_arguments(voc, 7, (1, 2, 3))[1:] == (7, (1, 2, 3))
    plain = [[0, 0, 0]]
    assert palette_arguments(plain) == (plain, 255, None)
    assert palette_arguments(plain, default_color=(0, 0, 0)) == (plain, 255, (0, 0, 0))


@pytest.mark.parametrize("name", BUILTIN_PALETTES)
def test_palette_objects_go_straight_into_the_api(name):
    """No 'palette must be a torch.Tensor or numpy.ndarray, got Palette'."""
    palette = load_palette(name)
    labels = torch.tensor([[0, len(palette) - 1, palette.ignore_index]])
    rgb = vbkernels.encode_segmentation(labels, palette)
    assert rgb[0, 2].tolist() == list(palette.ignore_color)
    assert torch.equal(vbkernels.decode_segmentation(rgb, palette), labels)


@pytest.mark.parametrize("name", BUILTIN_PALETTES)
def test_palette_names_go_wherever_a_palette_goes(name, tmp_path):
    """issue 24, item 7: decode_segmentation(rgb, "cityscapes") raised a TypeError."""
    from vbkernels.cli.previews import seg_preview_png

    palette = load_palette(name)
    labels = torch.tensor([[0, len(palette) - 1, palette.ignore_index]])
    rgb = vbkernels.encode_segmentation(labels, name)
    assert torch.equal(rgb, vbkernels.encode_segmentation(labels, palette))
    assert torch.equal(vbkernels.decode_segmentation(rgb, name), labels)
    assert torch.equal(vbkernels.segmentation_logits(rgb.float() / 255, name.upper()),
                       vbkernels.segmentation_logits(rgb.float() / 255, palette))
    path = tmp_path / "p.csv"
    path.write_text(palette_to_csv(palette))
    assert torch.equal(vbkernels.decode_segmentation(rgb, path), labels)
    assert torch.equal(vbkernels.decode_segmentation(rgb, str(path)), labels)
    assert seg_preview_png(labels.numpy(), name)[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_palette_name_in_the_api_names_the_choices():
    with pytest.raises(ValueError, match="cityscapes"):
        vbkernels.decode_segmentation(torch.zeros(1, 1, 3, dtype=torch.uint8), "citiscapes")
