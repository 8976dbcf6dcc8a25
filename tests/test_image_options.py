"""Own images: crop (centre square or a box) and invert, checked against the pixels themselves."""

import numpy as np
import pytest
from PIL import Image

from robustlens.engine.data import DatasetError, load_image_file


def test_centre_crop_box_and_invert_match_the_pixels(tmp_path):
    pixels = np.zeros((40, 80), dtype=np.uint8)
    pixels[:, 20:60] = 255          # the centre square is white; the sides black
    pixels[0:10, 0:10] = 128
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    centre, note = load_image_file(path, (1, 40, 40), crop="centre")
    assert "cropped to 40×40 at (20, 0)" in note
    np.testing.assert_allclose(centre[0, 0].numpy(), 1.0)
    box, _ = load_image_file(path, (1, 10, 10), crop=(0, 0, 10, 10), invert=True)
    np.testing.assert_allclose(box[0, 0].numpy(), 1 - 128 / 255, atol=1e-6)
    whole, note = load_image_file(path, (1, 40, 80))
    assert "cropped" not in note and "inverted" not in note
    with pytest.raises(DatasetError, match="outside"):
        load_image_file(path, (1, 28, 28), crop=(100, 100, 120, 120))
