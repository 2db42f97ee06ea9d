"""Tests for semcorr.images: loading every kind of image input, refusing bad ones, checking points."""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semcorr.errors import InputError
from semcorr.images import DEFAULT_MAX_PIXELS, check_points, image_name, load_image


def _noise_rgb(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def _png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A real 8x8 PNG whose IHDR chunk is rewritten (with a valid CRC) to claim width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def _assert_valid(pixels: torch.Tensor, height: int, width: int) -> None:
    assert pixels.shape == (3, height, width)
    assert pixels.dtype == torch.float32
    assert pixels.is_contiguous() and pixels.device.type == "cpu"
    assert float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0


class TestBadFiles:
    def test_missing_path(self, tmp_path):
        path = tmp_path / "photo.jpg"
        with pytest.raises(InputError, match=r"photo\.jpg: not found$"):
            load_image(path)

    def test_directory(self, tmp_path):
        with pytest.raises(InputError, match=re.escape(f"{tmp_path}: is a directory")):
            load_image(str(tmp_path))

    def test_text_file(self, tmp_path):
        path = tmp_path / "notes.txt"
        path.write_text("not an image\n")
        with pytest.raises(InputError, match=r"notes\.txt: not an image file \(Pillow cannot identify it\)"):
            load_image(path)

    def test_random_bytes_with_png_name(self, tmp_path):
        path = tmp_path / "corrupt.png"
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        with pytest.raises(InputError, match=r"corrupt\.png: not an image file"):
            load_image(path)

    def test_truncated_jpeg_is_refused_not_padded(self, tmp_path):
        data = _save(_noise_rgb(128, 96), tmp_path / "full.jpg", quality=95).read_bytes()
        path = tmp_path / "broken.jpg"
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match=r"broken\.jpg: corrupt or truncated image data \(.*truncated") as info:
            load_image(path)
        assert "\n" not in str(info.value)

    def test_unsupported_type(self):
        with pytest.raises(InputError, match=r"cannot load an image from int; expected a path"):
            load_image(42)  # type: ignore[arg-type]  # a wrong type on purpose


class TestDecompressionBombs:
    def test_header_claiming_10_gigapixels(self, tmp_path):
        path = _png_claiming_size(tmp_path / "huge.png", 100_000, 100_000)
        with pytest.raises(
            InputError,
            match=r"huge\.png: 10000000000 pixels \(10000\.0 Mpx\) exceeds the limit of "
            r"100\.0 Mpx; pass max_pixels=10000000000 \(and raise PIL",
        ):
            load_image(path)

    def test_own_check_fires_from_header_without_decoding(self, tmp_path):
        # 120 Mpx: above our default limit but below Pillow's hard limit, so our check decides.
        path = _png_claiming_size(tmp_path / "big.png", 12_000, 10_000)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not leak
            with pytest.raises(
                InputError,
                match=r"big\.png: 12000x10000 pixels \(120\.0 Mpx\) exceeds the limit "
                r"of 100\.0 Mpx; pass max_pixels=120000000 if you trust this file",
            ):
                load_image(path)

    def test_raising_the_limit_lets_decoding_start(self, tmp_path):
        # The file's data really is 8x8, so once the header passes, decoding fails: proof the
        # refusal above came from the header alone.
        path = _png_claiming_size(tmp_path / "big.png", 12_000, 10_000)
        with pytest.raises(InputError, match=r"big\.png: corrupt or truncated image data"):
            load_image(path, max_pixels=200_000_000)

    def test_pillow_hard_limit_beyond_max_pixels(self, tmp_path):
        path = _png_claiming_size(tmp_path / "huge.png", 100_000, 100_000)
        with pytest.raises(InputError, match=r"huge\.png: refused by Pillow as a possible decompression bomb"):
            load_image(path, max_pixels=10**11)

    def test_normal_image_with_small_limit(self, tmp_path):
        path = _save(_noise_rgb(64, 48), tmp_path / "small.png")
        with pytest.raises(InputError, match=r"small\.png: 64x48 pixels \(0\.0 Mpx\) exceeds the limit"):
            load_image(path, max_pixels=1000)
        _assert_valid(load_image(path, max_pixels=64 * 48), 48, 64)

    def test_limit_applies_to_pil_images(self):
        with pytest.raises(InputError, match=r"PIL image: 64x48 pixels"):
            load_image(_noise_rgb(64, 48), max_pixels=100)

    def test_default_limit(self):
        assert DEFAULT_MAX_PIXELS == 100_000_000


class TestFiles:
    def test_rgb_png_roundtrip_exact(self, tmp_path):
        image = _noise_rgb(30, 20)
        pixels = load_image(_save(image, tmp_path / "a.png"))
        _assert_valid(pixels, 20, 30)
        expected = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
        assert torch.equal(pixels, expected)

    def test_str_and_pathlike_agree(self, tmp_path):
        path = _save(_noise_rgb(10, 6), tmp_path / "a.png")
        assert torch.equal(load_image(str(path)), load_image(path))

    def test_grayscale(self, tmp_path):
        path = _save(Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8), "L"), tmp_path / "g.png")
        pixels = load_image(path)
        _assert_valid(pixels, 1, 3)
        assert torch.allclose(pixels[:, 0, 1], torch.full((3,), 128 / 255))

    def test_la_composited_over_white(self, tmp_path):
        image = Image.new("LA", (2, 1))
        image.putpixel((0, 0), (0, 0))
        image.putpixel((1, 0), (100, 255))
        pixels = load_image(_save(image, tmp_path / "la.png"))
        assert torch.allclose(pixels[:, 0, 0], torch.ones(3))
        assert torch.allclose(pixels[:, 0, 1], torch.full((3,), 100 / 255))

    def test_rgba_transparent_pixel_becomes_white(self, tmp_path):
        image = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
        image.putpixel((1, 0), (255, 0, 0, 255))
        image.putpixel((2, 0), (0, 0, 0, 51))  # 20 % black over white -> 0.8
        pixels = load_image(_save(image, tmp_path / "rgba.png"))
        assert torch.allclose(pixels[:, 0, 0], torch.ones(3))
        assert torch.allclose(pixels[:, 0, 1], torch.tensor([1.0, 0.0, 0.0]))
        assert torch.allclose(pixels[:, 0, 2], torch.full((3,), 0.8))

    @pytest.mark.parametrize("transparent", [False, True])
    def test_palette(self, tmp_path, transparent):
        image = Image.new("P", (2, 1))
        image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
        image.putpixel((1, 0), 1)
        kwargs = {"transparency": 0} if transparent else {}
        pixels = load_image(_save(image, tmp_path / "p.png", **kwargs))
        assert torch.allclose(pixels[:, 0, 0], torch.ones(3) if transparent else torch.zeros(3))
        assert torch.allclose(pixels[:, 0, 1], torch.tensor([0.0, 0.0, 1.0]))

    def test_16bit_grayscale_png_scaled_not_clipped(self, tmp_path):
        values = np.array([[0, 32768, 65535, 255]], dtype=np.uint16)
        path = _save(Image.fromarray(values), tmp_path / "deep.png")
        with Image.open(path) as reopened:
            assert reopened.mode.startswith("I")
            assert reopened.convert("RGB").getpixel((1, 0)) == (255, 255, 255)  # what we must avoid
        pixels = load_image(path)
        _assert_valid(pixels, 1, 4)
        assert torch.allclose(pixels[:, 0, 2], torch.ones(3))
        assert torch.allclose(pixels[:, 0, 1], torch.full((3,), 32768 / 65535))
        assert float(pixels[0, 0, 3]) == pytest.approx(255 / 65535)

    def test_cmyk_jpeg(self, tmp_path):
        path = _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
        pixels = load_image(path)
        _assert_valid(pixels, 16, 16)
        assert torch.allclose(pixels[:, 8, 8], torch.tensor([1.0, 0.0, 0.0]), atol=0.05)

    @pytest.mark.parametrize("orientation, corner", [(6, (0, -1)), (8, (-1, 0))])
    def test_exif_orientation(self, tmp_path, orientation, corner):
        # Stored 40 wide x 24 high with a red block in the stored top-left corner.
        stored = np.zeros((24, 40, 3), dtype=np.uint8)
        stored[:8, :8] = (255, 0, 0)
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = _save(Image.fromarray(stored), tmp_path / "rot.jpg", exif=exif, quality=95)
        pixels = load_image(path)
        _assert_valid(pixels, 40, 24)  # displayed transposed: 24 wide x 40 high
        # 6 = rotate 90 degrees clockwise for display (top-left -> top-right); 8 = counter-clockwise.
        row, col = (2 if corner[0] == 0 else 37), (2 if corner[1] == 0 else 21)
        assert pixels[0, row, col] > 0.8 and pixels[1, row, col] < 0.2
        assert pixels[0, 2, 2 if corner[1] == -1 else 21] < 0.2  # the opposite top corner is black


class TestPILModes:
    @pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "CMYK", "YCbCr", "RGBA", "LA", "I", "F", "I;16", "I;16B"])
    def test_every_mode_loads(self, mode):
        image = _noise_rgb(12, 9).convert(mode if not mode.startswith("I;16") and mode not in "IF" else "L")
        if mode in ("I", "F", "I;16"):
            image = image.convert(mode)
        elif mode == "I;16B":
            image = Image.frombytes("I;16B", (12, 9), np.full((9, 12), 65535, dtype=">u2").tobytes())
        _assert_valid(load_image(image), 9, 12)

    def test_i16_big_endian_full_scale(self):
        image = Image.frombytes("I;16B", (2, 1), np.array([[65535, 32768]], dtype=">u2").tobytes())
        pixels = load_image(image)
        assert float(pixels[0, 0, 0]) == 1.0
        assert float(pixels[0, 0, 1]) == pytest.approx(0.5, abs=1e-4)

    def test_32bit_int_with_16bit_values(self):
        pixels = load_image(Image.fromarray(np.array([[65535, 0]], dtype=np.int32)))
        assert pixels[:, 0, 0].tolist() == [1.0, 1.0, 1.0] and float(pixels[0, 0, 1]) == 0.0

    def test_float_mode_clipped(self):
        pixels = load_image(Image.fromarray(np.array([[-1.0, 0.25, 3.0]], dtype=np.float32), "F"))
        assert pixels[0, 0].tolist() == [0.0, 0.25, 1.0]

    def test_float_mode_nan(self):
        with pytest.raises(InputError, match="PIL image: float image contains non-finite values"):
            load_image(Image.fromarray(np.array([[np.nan]], dtype=np.float32), "F"))

    def test_empty_pil_image(self):
        with pytest.raises(InputError, match=r"PIL image: image is empty \(0x5 pixels\)"):
            load_image(Image.new("RGB", (0, 5)))

    def test_opened_lazy_image_named_by_file(self, tmp_path):
        path = _save(_noise_rgb(8, 4), tmp_path / "lazy.png")
        with Image.open(path) as image:
            assert image_name(image) == f"PIL image {path}"
            _assert_valid(load_image(image), 4, 8)


class TestTensors:
    @pytest.mark.parametrize("shape", [(3, 5, 7), (1, 5, 7), (5, 7)])
    def test_float_layouts(self, shape):
        tensor = torch.rand(shape)
        pixels = load_image(tensor)
        _assert_valid(pixels, 5, 7)
        assert torch.equal(pixels, tensor.reshape(-1, 5, 7).expand(3, 5, 7))

    @pytest.mark.parametrize("shape", [(3, 5, 7), (1, 5, 7), (5, 7)])
    def test_uint8_layouts(self, shape):
        tensor = torch.full(shape, 255, dtype=torch.uint8)
        assert torch.equal(load_image(tensor), torch.ones(3, 5, 7))

    def test_other_float_dtypes(self):
        _assert_valid(load_image(torch.rand(3, 4, 4, dtype=torch.float64)), 4, 4)
        _assert_valid(load_image(torch.rand(3, 4, 4).to(torch.bfloat16)), 4, 4)

    def test_keeps_autograd_graph(self):
        tensor = torch.rand(3, 4, 4, requires_grad=True)
        assert load_image(tensor).requires_grad

    @pytest.mark.parametrize("shape", [(4, 5, 7), (1, 3, 5, 7), (7,), (5, 7, 3)])
    def test_bad_shapes(self, shape):
        with pytest.raises(InputError, match=re.escape(f"tensor {shape}: expected a tensor of shape (3, H, W)")):
            load_image(torch.rand(shape))

    def test_out_of_range(self):
        with pytest.raises(
            InputError,
            match=r"tensor \(3, 2, 2\): float pixel values must lie in \[0, 1\]; "
            r"found \[0, 255\]",
        ):
            load_image(torch.tensor([0.0, 255.0]).repeat(6).reshape(3, 2, 2))

    def test_round_off_just_outside_unit_range_is_clipped(self):
        tensor = torch.tensor([-4e-4, 1.0005]).repeat(6).reshape(3, 2, 2)
        loaded = load_image(tensor)
        assert loaded.min() == 0.0 and loaded.max() == 1.0

    @pytest.mark.parametrize("bad", [float("nan"), float("inf")])
    def test_non_finite(self, bad):
        tensor = torch.zeros(3, 2, 2)
        tensor[1, 1, 1] = bad
        with pytest.raises(InputError, match=r"tensor \(3, 2, 2\): pixel values must be finite"):
            load_image(tensor)

    def test_integer_dtype(self):
        with pytest.raises(InputError, match=r"tensor \(3, 2, 2\): dtype torch.int64 not supported"):
            load_image(torch.zeros(3, 2, 2, dtype=torch.int64))

    def test_empty(self):
        with pytest.raises(InputError, match=r"tensor \(3, 0, 5\): image is empty \(5x0 pixels\)"):
            load_image(torch.zeros(3, 0, 5))


class TestNumpy:
    def test_grey_uint8(self):
        pixels = load_image(np.array([[0, 255]], dtype=np.uint8))
        assert pixels[:, 0, 1].tolist() == [1.0, 1.0, 1.0]

    def test_hwc_uint16(self):
        array = np.zeros((2, 3, 3), dtype=np.uint16)
        array[0, 0] = (65535, 32768, 0)
        pixels = load_image(array)
        _assert_valid(pixels, 2, 3)
        assert torch.allclose(pixels[:, 0, 0], torch.tensor([1.0, 32768 / 65535, 0.0]))

    def test_hwc_float_rgba_over_white(self):
        array = np.zeros((2, 2, 4), dtype=np.float32)
        array[0, 0] = (1.0, 0.0, 0.0, 1.0)
        pixels = load_image(array)
        assert pixels[:, 0, 0].tolist() == [1.0, 0.0, 0.0]
        assert pixels[:, 1, 1].tolist() == [1.0, 1.0, 1.0]

    @pytest.mark.parametrize("shape", [(3, 5, 7), (5, 7, 2), (1, 5, 7, 3), (5,)])
    def test_bad_shapes(self, shape):
        expected = f"numpy array {shape}: expected (H, W), (H, W, 3) or (H, W, 4)"
        with pytest.raises(InputError, match=re.escape(expected)):
            load_image(np.zeros(shape, dtype=np.uint8))

    def test_int64_refused(self):
        with pytest.raises(InputError, match=r"numpy array \(2, 2\): dtype int64 not supported"):
            load_image(np.zeros((2, 2), dtype=np.int64))

    def test_float_out_of_range_and_nan(self):
        with pytest.raises(InputError, match=r"numpy array \(2, 2, 3\): float pixel values must lie in \[0, 1\]"):
            load_image(np.full((2, 2, 3), 1.5))
        with pytest.raises(InputError, match=r"numpy array \(2, 2\): pixel values must be finite"):
            load_image(np.array([[0.0, np.nan], [0.0, 0.0]]))

    def test_empty(self):
        with pytest.raises(InputError, match=r"image is empty \(0x4 pixels\)"):
            load_image(np.zeros((4, 0, 3), dtype=np.uint8))


class TestImageName:
    def test_names(self, tmp_path):
        assert image_name(tmp_path / "a.png") == str(tmp_path / "a.png")
        assert image_name("photo.jpg") == "photo.jpg"
        assert image_name(Image.new("RGB", (2, 2))) == "PIL image"
        assert image_name(torch.zeros(3, 20, 30)) == "tensor (3, 20, 30)"
        assert image_name(np.zeros((20, 30, 3))) == "numpy array (20, 30, 3)"


class TestCheckPoints:
    SIZE = (300, 400)  # (H, W)

    @pytest.mark.parametrize(
        "points", [[[1, 2], [3.5, 4]], np.array([[1, 2], [3.5, 4]]), torch.tensor([[1, 2], [3.5, 4]])]
    )
    def test_accepted_containers(self, points):
        result = check_points(points, self.SIZE)
        assert result.dtype == torch.float32 and result.tolist() == [[1.0, 2.0], [3.5, 4.0]]

    def test_edges_allowed(self):
        corners = [[0, 0], [400, 0], [0, 300], [400, 300]]
        assert check_points(corners, self.SIZE).tolist() == [[0.0, 0.0], [400.0, 0.0], [0.0, 300.0], [400.0, 300.0]]

    def test_empty(self):
        assert check_points(np.zeros((0, 2)), self.SIZE).shape == (0, 2)

    @pytest.mark.parametrize(
        "bad, text", [(float("nan"), "x=nan, y=3.0"), (float("inf"), "x=inf, y=3.0"), (float("-inf"), "x=-inf, y=3.0")]
    )
    def test_non_finite(self, bad, text):
        with pytest.raises(InputError, match=re.escape(f"point 1 ({text}) is not a finite number")):
            check_points([[1, 1], [bad, 3.0]], self.SIZE)

    @pytest.mark.parametrize("x, y", [(-0.1, 10), (400.01, 10), (10, -1), (10, 300.5), (512, 10)])
    def test_outside_each_side(self, x, y):
        message = f"point 2 (x={float(x)}, y={float(y)}) lies outside image B (400x300 pixels)"
        with pytest.raises(InputError, match=re.escape(message) + "$"):
            check_points([[0, 0], [1, 1], [x, y]], self.SIZE, image="image B")

    def test_default_image_name(self):
        with pytest.raises(InputError, match=re.escape("point 0 (x=-1.0, y=0.0) lies outside image (400x300 pixels)")):
            check_points([[-1, 0]], self.SIZE)

    @pytest.mark.parametrize(
        "points, shape", [([1, 2, 3], "(3,)"), ([[1, 2, 3]], "(1, 3)"), (np.zeros((2, 2, 2)), "(2, 2, 2)")]
    )
    def test_wrong_shape(self, points, shape):
        with pytest.raises(InputError, match=re.escape(f"points must be (N, 2) pairs of x, y; got shape {shape}")):
            check_points(points, self.SIZE)

    def test_ragged(self):
        with pytest.raises(InputError, match=r"points must be \(N, 2\) pairs of x, y"):
            check_points([[1, 2], [3]], self.SIZE)
