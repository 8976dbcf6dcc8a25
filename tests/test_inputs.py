"""Files the engine reads: regular files only (never a FIFO or a device), sizes checked first, and
images of every Pillow mode scaled to [0, 1] by their full range."""

import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from robustlens.engine.data import DatasetError, load_image_file, read_idx
from robustlens.engine.files import FileRefused, check_regular, open_regular, read_regular
from robustlens.engine.models import ModelError, load_checkpoint

GRAY = (1, 28, 28)


def bounded(call, timeout=30.0):
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it has not returned in time."""
    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the call blocked (it opened or read a FIFO or device)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path


# ---------------------------------------------------------------- the helper

def test_open_regular_refuses_fifos_devices_and_directories_without_opening_them(tmp_path, fifo):
    with pytest.raises(FileRefused, match=r"pipe.png is not a regular file \(a named pipe\)"):
        bounded(lambda: open_regular(fifo, limit=None))
    with pytest.raises(FileRefused, match=r"/dev/zero is not a regular file \(a character device\)"):
        bounded(lambda: read_regular("/dev/zero", limit=1024))
    with pytest.raises(FileRefused, match=r"is not a regular file \(a directory\)"):
        check_regular(tmp_path)
    with pytest.raises(FileRefused, match="no such file"):
        check_regular(tmp_path / "absent")


def test_open_regular_states_the_size_limit(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 3000)
    with pytest.raises(ModelError, match=r"too large for a checkpoint: 2.93 KiB, the limit is 2 KiB"):
        open_regular(big, limit=2048, what="a checkpoint", error=ModelError)
    assert read_regular(big, limit=4096) == b"x" * 3000


def test_a_fifo_or_directory_as_an_image_is_refused_at_once(tmp_path, fifo):
    with pytest.raises(DatasetError, match=r"not a regular file \(a named pipe\)"):
        bounded(lambda: load_image_file(fifo, GRAY))
    with pytest.raises(DatasetError, match=r"not a regular file \(a directory\)"):
        bounded(lambda: load_image_file(tmp_path, GRAY))
    with pytest.raises(DatasetError, match=r"not a regular file \(a character device\)"):
        bounded(lambda: load_image_file("/dev/zero", GRAY))


def test_a_fifo_or_device_as_a_model_or_dataset_file_is_refused_at_once(tmp_path, fifo):
    with pytest.raises(ModelError, match=r"not a regular file \(a named pipe\)"):
        bounded(lambda: load_checkpoint(fifo, device="cpu"))
    with pytest.raises(ModelError, match=r"/dev/zero is not a regular file \(a character device\)"):
        bounded(lambda: load_checkpoint("/dev/zero", device="cpu"))
    with pytest.raises(DatasetError, match=r"not a regular file \(a named pipe\)"):
        bounded(lambda: read_idx(fifo))


def test_a_gzip_bomb_idx_file_reads_only_what_its_header_announces(tmp_path):
    import gzip

    path = tmp_path / "bomb-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big")
    with gzip.open(path, "wb") as f:
        f.write(header + bytes(50_000_000))
    with pytest.raises(DatasetError, match="longer than its header says"):
        read_idx(path)
    with gzip.open(path, "wb") as f:
        f.write(header + bytes(range(10)))
    assert read_idx(path).tolist() == list(range(10))


# ---------------------------------------------------------------- images of every mode

def load(path, shape=GRAY):
    x, note = load_image_file(path, shape)
    assert x.dtype == torch.float32 and x.shape == (1, *shape)
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0
    return x, note


def test_a_16_bit_png_ramp_is_scaled_by_65535_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 28).round().astype(np.uint16), (28, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    x, _ = load(tmp_path / "ramp16.png")
    assert abs(x.mean().item() - 0.5) < 0.01
    assert x.min().item() == 0.0 and abs(x.max().item() - 1.0) < 1e-6
    big_endian = Image.fromarray(ramp.astype(">u2"))
    assert big_endian.mode == "I;16B"
    big_endian.save(tmp_path / "ramp16b.tiff")
    x, _ = load(tmp_path / "ramp16b.tiff")
    assert abs(x.mean().item() - 0.5) < 0.01


def test_a_32_bit_integer_tiff_is_scaled_by_its_full_range(tmp_path):
    ramp = np.tile(np.linspace(-2**31, 2**31 - 1, 28).astype(np.int64).astype(np.int32), (28, 1))
    Image.fromarray(ramp, mode="I").save(tmp_path / "ramp32.tiff")
    x, note = load(tmp_path / "ramp32.tiff")
    assert abs(x.mean().item() - 0.5) < 0.01 and x.min().item() < 0.01 and x.max().item() > 0.99
    assert "32-bit" in note


def test_float_tiffs_are_kept_in_range_rescaled_out_of_range_and_refused_with_nan(tmp_path):
    Image.fromarray(np.full((28, 28), 0.25, np.float32), mode="F").save(tmp_path / "quarter.tiff")
    x, note = load(tmp_path / "quarter.tiff")
    assert torch.allclose(x, torch.full_like(x, 0.25)) and note == "used as is"
    wide = np.tile(np.linspace(0, 1000, 28, dtype=np.float32), (28, 1))
    Image.fromarray(wide, mode="F").save(tmp_path / "wide.tiff")
    x, note = load(tmp_path / "wide.tiff")
    assert "rescaled to [0, 1]" in note and abs(x.mean().item() - 0.5) < 0.01
    nan = np.full((28, 28), np.nan, np.float32)
    Image.fromarray(nan, mode="F").save(tmp_path / "nan.tiff")
    with pytest.raises(DatasetError, match="nan.tiff holds NaN"):
        load_image_file(tmp_path / "nan.tiff", GRAY)


@pytest.mark.parametrize("mode, fill, expected", [
    ("1", 1, 1.0),
    ("L", 51, 0.2),
    ("RGB", (255, 255, 255), 1.0),
    ("CMYK", (0, 0, 0, 0), 1.0),        # no ink: white
    ("CMYK", (0, 0, 0, 255), 0.0),      # full black ink
    ("YCbCr", (128, 128, 128), 128 / 255),
])
def test_each_mode_reads_at_its_known_brightness(tmp_path, mode, fill, expected):
    path = tmp_path / f"{mode}.tiff"
    Image.new(mode, (28, 28), fill).save(path)
    x, _ = load(path)
    assert abs(x.mean().item() - expected) < 0.01, (mode, x.mean().item())


def test_palette_images_are_expanded_through_their_palette(tmp_path):
    image = Image.new("P", (28, 28), 1)
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    image.save(tmp_path / "palette.png")
    x, _ = load(tmp_path / "palette.png")
    assert abs(x.mean().item() - 1.0) < 1e-6


@pytest.mark.parametrize("mode, fill", [("LA", (255, 51)), ("RGBA", (255, 255, 255, 51))])
def test_alpha_is_composited_on_black_and_said(tmp_path, mode, fill):
    Image.new(mode, (28, 28), fill).save(tmp_path / "alpha.png")
    x, note = load(tmp_path / "alpha.png")
    assert abs(x.mean().item() - 0.2) < 0.01 and "composited on black" in note


def test_a_grayscale_image_becomes_rgb_for_a_colour_model(tmp_path):
    Image.new("L", (32, 32), 102).save(tmp_path / "gray.png")
    x, note = load(tmp_path / "gray.png", (3, 32, 32))
    assert torch.allclose(x, torch.full_like(x, 0.4)) and "to RGB" in note


def test_exif_orientation_turns_the_image_upright(tmp_path):
    array = np.zeros((28, 20), np.uint8)
    array[:, :10] = 255  # stored: left half white
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image.save(tmp_path / "rotated.png", exif=exif)
    x, note = load(tmp_path / "rotated.png", (1, 20, 28))
    expected = torch.from_numpy(np.rot90(array, k=-1).copy()).float() / 255
    assert torch.equal(x[0, 0], expected) and "EXIF orientation" in note
    assert x[0, 0, :10].mean() == 1.0 and x[0, 0, 10:].mean() == 0.0  # upright: top half white


@pytest.mark.parametrize("suffix", [".gif", ".tiff"])
def test_a_multi_frame_file_uses_frame_one_and_says_so(tmp_path, suffix):
    frames = [Image.new("L", (28, 28), value) for value in (255, 10, 20, 30, 40, 50, 60)]
    path = tmp_path / f"frames{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    x, note = load(path)
    assert "frame 1 of 7 used" in note and abs(x.mean().item() - 1.0) < 0.01


def test_resizing_keeps_the_values_in_range_and_16_bit_precision(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 200).round().astype(np.uint16), (100, 1))
    Image.fromarray(ramp).save(tmp_path / "wide16.png")
    x, note = load(tmp_path / "wide16.png")
    assert "resized 200×100 to 28×28" in note and abs(x.mean().item() - 0.5) < 0.01
