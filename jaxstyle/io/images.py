"""Image input and output: the only place jaxstyle reads or writes image files.

Every image inside jaxstyle is a float32 RGB array in [0, 1], HWC. :func:`load_image` turns anything Pillow can
decode into that form, or raises :class:`~jaxstyle.errors.ImageError` with a one-line ``file: problem — fix``
message; it never returns a silently padded or half-decoded picture. :func:`save_image`, :func:`save_gif` and
the contact sheet writers go through :func:`jaxstyle.atomic.atomic_write`, so an output is either complete or
absent. See docs/images.md for how each unusual input is handled.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import warnings
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageCms, ImageDraw, ImageFile, ImageFont, ImageOps

from ..nets import vgg
from ..atomic import atomic_write
from ..errors import ImageError, UsageError

# Refuse images above this many pixels, read from the header before any decoding (a 40 MP photo is ~480 MB as
# float32 RGB, and far beyond what style transfer can optimise). Callers pass max_pixels=... (CLI --max-pixels)
# to raise it, or None to disable the check.
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIZE = vgg.MIN_SIZE
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}
BACKGROUND = 1.0  # alpha is composited on white: transparent regions of logos/drawings are usually "paper"

# A truncated file must be an error, never a picture padded with grey (Pillow's opt-in behaviour).
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Pillow's own bomb limit is a module global; when a caller allows more pixels than Pillow does we lift it for
# the duration of one load, under a lock so concurrent loads never see each other's setting.
_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageWarning(UserWarning):
    """An input image was usable but altered on the way in (first frame taken, upscaled, profile ignored...)."""


# --------------------------------------------------------------------------------------------- loading


def load_image(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, role: str = "content") -> np.ndarray:
    """Read an image file as float32 RGB in [0, 1], shape ``(H, W, 3)``.

    ``role`` ("content", "style", ...) only words the error messages. ``max_pixels`` (width x height, read from
    the file header before decoding) guards against decompression bombs; ``None`` disables it. EXIF orientation
    is applied, alpha is composited on white, 16-bit and float images keep their precision, embedded ICC
    profiles are converted to sRGB, animated files give their first frame (with an :class:`ImageWarning`) and
    images smaller than :data:`MIN_SIZE` on a side are upscaled (with an :class:`ImageWarning`).
    """
    path = os.fspath(path)
    what = f"{role} image"
    if not os.path.exists(path):
        raise ImageError(path, f"no such file ({what})", "check the path")
    if os.path.isdir(path):
        raise ImageError(path, f"is a directory, not an image ({what})", "pass an image file (PNG, JPEG, ...)")
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ImageError(path, f"cannot read {what} ({e.strerror})", "check the file's permissions") from None
    if size == 0:
        raise ImageError(path, f"empty file ({what})", "the file has no data; re-export or re-download it")
    if max_pixels is not None and max_pixels <= 0:
        raise UsageError(f"max_pixels must be positive or None, got {max_pixels}")

    lift = max_pixels is None or (Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS)
    with _PILLOW_LIMIT_LOCK if lift else contextlib.nullcontext():
        saved = Image.MAX_IMAGE_PIXELS
        if lift:
            Image.MAX_IMAGE_PIXELS = None  # our own header check below replaces Pillow's
        try:
            pil = _decode(path, what, max_pixels)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    array = _to_float_rgb(pil, path, what)

    h, w = array.shape[:2]
    if min(h, w) < MIN_SIZE:
        # Decision: upscale rather than refuse. VGG needs >= 16 px on each side; a tiny image still has colours
        # and texture worth transferring, and refusing would only make the user resize it by hand.
        scale = MIN_SIZE / min(h, w)
        new_h, new_w = max(MIN_SIZE, round(h * scale)), max(MIN_SIZE, round(w * scale))
        if max_pixels is not None and new_h * new_w > max_pixels:
            raise ImageError(path, f"{what} is {w}x{h}; upscaling it to {MIN_SIZE} px on its short side would "
                                   f"need {new_w}x{new_h} pixels, above the limit of {max_pixels}",
                             "crop it to a less extreme aspect ratio")
        warnings.warn(f"{path}: {what} is only {w}x{h} pixels; upscaled to {new_w}x{new_h} "
                      f"(the network needs at least {MIN_SIZE} px per side)", ImageWarning, stacklevel=2)
        array = resize_to(array, (new_h, new_w))
    return array


def load_mask(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, role: str = "mask") -> np.ndarray:
    """Read a mask file as float32 ``(H, W)`` in [0, 1]: its grey level (the mean of R, G and B after
    :func:`load_image`'s handling; alpha composited on white, so draw masks opaque)."""
    return load_image(path, max_pixels=max_pixels, role=role).mean(axis=-1)


def _decode(path: str, what: str, max_pixels: int | None) -> Image.Image:
    """Open, check the header, fully decode, apply EXIF orientation. Every Pillow failure becomes ImageError."""
    bad = "re-export or re-download it, or convert it to PNG"
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice its limit; our own check below decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise ImageError(path, f"{what} declares an empty size {w}x{h}", bad)
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageError(path, f"{what} is {w}x{h} = {w * h / 1e6:.1f} megapixels, above the limit "
                                           f"of {max_pixels / 1e6:g} megapixels (decompression-bomb guard)",
                                     "downscale it first, or raise the limit with --max-pixels")
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    im.seek(0)
                    warnings.warn(f"{path}: {what} has {frames} frames (animated or multi-page); using the "
                                  "first", ImageWarning, stacklevel=3)
                im.load()  # full decode now: truncation and corrupt data raise here, not later
                # Orientation is metadata (phones store the sensor's pixels plus an EXIF rotation flag).
                out = ImageOps.exif_transpose(im)
                out.load()
                out.info.setdefault("icc_profile", im.info.get("icc_profile"))
                if "transparency" in im.info:
                    out.info.setdefault("transparency", im.info["transparency"])
                return out
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(path, f"{what} is too large to decode safely ({e})",
                         "downscale it first, or raise the limit with --max-pixels") from None
    except Image.UnidentifiedImageError:
        raise ImageError(path, f"not an image file Pillow can read ({what})",
                         "use PNG, JPEG, WebP, GIF, BMP or TIFF") from None
    except MemoryError:
        raise ImageError(path, f"not enough memory to decode the {what}", "downscale it first") from None
    except Exception as e:  # noqa: BLE001 -- see below
        # Pillow's decoders signal corrupt input with many exception types (OSError "image file is truncated",
        # SyntaxError for broken PNG chunks, ValueError, EOFError, struct.error, IndexError, ...). This block only
        # wraps Pillow calls on untrusted bytes, so any failure here means "this file is broken".
        detail = " ".join(str(e).split())[:120]
        problem = "truncated" if "truncated" in detail else "corrupt or unsupported"
        raise ImageError(path, f"{what} is {problem} ({type(e).__name__}: {detail})", bad) from None


def _to_float_rgb(im: Image.Image, path: str, what: str) -> np.ndarray:
    """Any decoded Pillow mode -> float32 RGB in [0, 1], alpha composited on white."""
    mode = im.mode
    icc = im.info.get("icc_profile")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale (PNG opens as I;16 or I): full 0..65535 range, not clipped to 8 bits.
        grey = np.asarray(im).astype(np.float64) / 65535.0
        return _finish(np.repeat(grey[..., None], 3, axis=2), path, what)
    if mode == "F":
        # Float TIFF: taken as linear-in-file values already in [0, 1]; out-of-range values are clipped.
        grey = np.asarray(im, dtype=np.float64)
        return _finish(np.repeat(grey[..., None], 3, axis=2), path, what)
    if mode in ("P", "1", "L", "RGB") and "transparency" in im.info:
        im = im.convert("RGBA")  # palette or colour-key transparency (GIF, PNG tRNS)
    elif mode in ("P", "1", "L"):
        im = im.convert("RGB")
    elif mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA", "CMYK"):
        try:
            im = im.convert("RGB")  # YCbCr, HSV, RGBX, LAB ...
        except (ValueError, OSError) as e:
            raise ImageError(path, f"{what} has colour mode {mode!r}, which cannot be converted to RGB ({e})",
                             "convert it to an RGB PNG or JPEG") from None
    if icc and im.mode in ("RGB", "RGBA", "CMYK"):
        im = _icc_to_srgb(im, icc, path, what)
    if im.mode == "CMYK":
        # No usable profile: Pillow's standard formula R = (1 - C)(1 - K), ... (Adobe's inverted CMYK JPEGs are
        # already un-inverted by Pillow's JPEG reader).
        im = im.convert("RGB")
    rgba = np.asarray(im, dtype=np.float64) / 255.0
    if rgba.shape[-1] == 4:
        alpha = rgba[..., 3:]
        rgba = rgba[..., :3] * alpha + BACKGROUND * (1.0 - alpha)
    return _finish(rgba, path, what)


def _icc_to_srgb(im: Image.Image, icc: bytes, path: str, what: str) -> Image.Image:
    """Convert pixels from the embedded ICC profile to sRGB (CMYK prints, Display P3 / Adobe RGB photos)."""
    out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode=out_mode)
    except Exception as e:  # noqa: BLE001 -- littlecms rejects bad profiles with PyCMSError, OSError, TypeError...
        warnings.warn(f"{path}: {what} has an unusable ICC colour profile ({type(e).__name__}); "
                      "colours taken as sRGB", ImageWarning, stacklevel=4)
        return im


def _finish(array: np.ndarray, path: str, what: str) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        raise ImageError(path, f"{what} contains non-finite (NaN/inf) pixel values", "re-export it as PNG")
    return np.ascontiguousarray(np.clip(array, 0.0, 1.0), dtype=np.float32)


# --------------------------------------------------------------------------------------------- resizing


def _check_image(image) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an HWC image with 1 or 3 channels, got shape {image.shape}")
    return image


def resize_to(image, size: tuple[int, int]) -> np.ndarray:
    """Resize a float HWC image to ``(height, width)`` with Lanczos (Pillow, per channel in float mode "F").

    Pillow's "F" mode keeps full float precision (no 8-bit round trip); Lanczos rings slightly past the input's
    range, so the result is clipped back to [0, 1].
    """
    image = _check_image(image)
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"target size must be positive, got {size}")
    if (h, w) == image.shape[:2]:
        return image.copy()
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize((w, h), Image.Resampling.LANCZOS))
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def resize_long_side(image, size: int) -> np.ndarray:
    """Resize so the longer side is ``size`` pixels, keeping the aspect ratio (for I/O users: the fast method's
    styles, previews and inputs, thumbnails; the Gatys problem sizes its arrays itself).

    The short side never drops below :data:`MIN_SIZE` (very long panoramas get slightly squashed instead of
    becoming too thin for the network).
    """
    size = int(size)
    if size < MIN_SIZE:
        raise UsageError(f"image size must be at least {MIN_SIZE} pixels, got {size}")
    image = _check_image(image)
    return resize_to(image, vgg.long_side_shape(image.shape[:2], size))


# --------------------------------------------------------------------------------------------- saving


def _to_uint8(image) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    image = _check_image(image)
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains non-finite values; refusing to save it")
    out = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out[..., 0] if out.shape[2] == 1 else out


def _extension(path: str, allowed: Sequence[str]) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in allowed:
        shown = f"{ext!r}" if ext else "no extension"
        raise UsageError(f"{path}: unsupported output type ({shown}) — use one of {', '.join(allowed)}")
    return ext


OUTPUT_BITS = (8, 16)


def save_image(path, image, *, quality: int = 95, bits: int = 8) -> None:
    """Write a float HWC image in [0, 1] as PNG or JPEG (chosen by extension), atomically.

    Values are clipped to [0, 1] and rounded to the nearest 8-bit level (``bits=16``, PNG only: 16-bit level,
    for high-resolution work that is edited further). JPEGs use 4:4:4 chroma (no subsampling), which keeps thin
    coloured strokes of stylised images sharp.
    """
    path = os.fspath(path)
    ext = _extension(path, OUTPUT_EXTENSIONS)
    if bits not in OUTPUT_BITS:
        raise UsageError(f"output bits must be one of {', '.join(map(str, OUTPUT_BITS))}, not {bits}")
    if bits == 16:
        if _FORMATS[ext] != "PNG":
            raise UsageError(f"{path}: 16-bit output needs a .png file (JPEG holds 8 bits per channel)")
        return _save_png16(path, image)
    pil = Image.fromarray(_to_uint8(image))
    options = {"quality": int(quality), "subsampling": 0} if _FORMATS[ext] == "JPEG" else {}
    with atomic_write(path, "wb") as f:
        pil.save(f, format=_FORMATS[ext], **options)


def _save_png16(path: str, image) -> None:
    """16 bits per channel RGB PNG, tagged sRGB (an ``sRGB`` chunk, perceptual intent: the values are sRGB, as
    every image jaxstyle reads or writes), written with pypng (Pillow writes 8-bit RGB PNGs only)."""
    try:
        import png
    except ImportError:
        raise UsageError("16-bit PNG output needs pypng — pip install 'jaxstyle[png16]' (or pypng)") from None
    image = _check_image(np.asarray(image, np.float32))
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains non-finite values; refusing to save it")
    levels = np.rint(np.clip(image, 0.0, 1.0) * 65535.0).astype(">u2")
    h, w, c = levels.shape
    buffer = io.BytesIO()
    png.Writer(w, h, greyscale=c == 1, bitdepth=16).write(buffer, levels.reshape(h, w * c))
    chunks = list(png.Reader(bytes=buffer.getvalue()).chunks())
    chunks.insert(1, (b"sRGB", b"\x00"))  # after IHDR, before IDAT (PNG 1.2, 4.2.2.3)
    with atomic_write(path, "wb") as f:
        png.write_chunks(f, chunks)


def save_gif(path, frames: Iterable, *, duration_ms: int = 100, loop: int = 0) -> None:
    """Write float HWC frames as an animated GIF, atomically. ``loop=0`` repeats forever.

    Frames of another size than the first are resized to it. Pillow merges consecutive identical frames
    (lengthening the first one's duration), so the file can hold fewer frames than given.
    """
    path = os.fspath(path)
    _extension(path, (".gif",))
    frames = [np.asarray(f, dtype=np.float32) for f in frames]
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    first = _check_image(frames[0]).shape[:2]
    pils = [Image.fromarray(_to_uint8(f if _check_image(f).shape[:2] == first else resize_to(f, first)))
            for f in frames]
    with atomic_write(path, "wb") as f:
        pils[0].save(f, format="GIF", save_all=True, append_images=pils[1:], duration=int(duration_ms),
                     loop=int(loop))


def check_output_path(path, inputs=(), *, allowed: Sequence[str] = OUTPUT_EXTENSIONS,
                      create_directory: bool = False) -> str:
    """Validate an output path before any work starts; return it. Raises :class:`UsageError` (one line).

    Refused: a missing or unwritable directory, an extension not in ``allowed``, a path that is a directory, and
    the same file as any of ``inputs`` (compared by real path and, where both exist, by inode). An existing
    output is fine: outputs are replaced (atomically), inputs never. With ``create_directory`` the directory may
    be one the caller makes later: then its nearest existing ancestor must be writable.
    """
    path = os.fspath(path)
    allowed = tuple(a.lower() for a in allowed)
    if os.path.isdir(path):
        raise UsageError(f"{path}: output is a directory — give a file name ending in {', '.join(allowed)}")
    _extension(path, allowed)
    _check_directory(path, create_directory)
    real = os.path.realpath(path)
    for source in inputs:
        if source is None:
            continue
        source = os.fspath(source)
        same = os.path.realpath(source) == real
        if not same and os.path.exists(path) and os.path.exists(source):
            try:
                same = os.path.samefile(path, source)
            except OSError:
                same = False
        if same:
            raise UsageError(f"{path}: output would overwrite the input {source} — choose another output name")
    return path


def _check_directory(path: str, create_directory: bool) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        if not create_directory:
            raise UsageError(f"{path}: output directory {directory} does not exist — create it first")
        while not os.path.isdir(directory):  # the ancestor the missing directories would be made in
            directory = os.path.dirname(directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: output directory {directory} is not writable — choose another location")


# --------------------------------------------------------------------------------------------- contact sheets


def contact_sheet(images: Sequence, labels: Sequence[str] | None = None, *, columns: int | None = None,
                  cell: int | tuple[int, int] | None = None, pad: int = 8, title: str | None = None) -> np.ndarray:
    """A labelled grid of images on white, float32 HWC in [0, 1].

    Each image is scaled to fit its ``cell`` (``(height, width)``, an int for square cells, default: the largest
    image's size), centred, with its label (Pillow's default font) underneath; labels too wide are cut with
    "...". ``columns`` defaults to a near-square grid. ``title`` (e.g. the weights that made the images) goes
    on a line above the grid.
    """
    images = [_check_image(im) for im in images]
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels")
    n = len(images)
    columns = int(columns) if columns else math.ceil(math.sqrt(n))
    if columns < 1:
        raise ValueError(f"columns must be positive, got {columns}")
    rows = math.ceil(n / columns)
    if cell is None:
        cell_h, cell_w = max(im.shape[0] for im in images), max(im.shape[1] for im in images)
    elif isinstance(cell, int):
        cell_h = cell_w = cell
    else:
        cell_h, cell_w = (int(c) for c in cell)
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_h = 0
    if labels is not None:
        text_h = max(probe.textbbox((0, 0), "Ag" + "".join(labels), font=font)[3], 1) + pad // 2
    top = (max(probe.textbbox((0, 0), "Ag" + title, font=font)[3], 1) + pad) if title else 0
    sheet = Image.new("RGB", (columns * (cell_w + pad) + pad, top + rows * (cell_h + text_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), _fit_text(draw, title, font, sheet.width - 2 * pad), fill="black", font=font)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        x0, y0 = pad + c * (cell_w + pad), top + pad + r * (cell_h + text_h + pad)
        h, w = im.shape[:2]
        scale = min(cell_h / h, cell_w / w)
        th, tw = max(1, round(h * scale)), max(1, round(w * scale))
        tile = resize_to(im, (th, tw)) if (th, tw) != (h, w) else im
        tile = np.repeat(tile, 3, axis=2) if tile.shape[2] == 1 else tile
        sheet.paste(Image.fromarray(_to_uint8(tile)), (x0 + (cell_w - tw) // 2, y0 + (cell_h - th) // 2))
        if labels is not None:
            text = _fit_text(draw, str(labels[i]), font, cell_w)
            width = draw.textlength(text, font=font)
            draw.text((x0 + (cell_w - width) / 2, y0 + cell_h + pad // 4), text, fill="black", font=font)
    return np.asarray(sheet, dtype=np.float32) / 255.0


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    text = " ".join(text.split())
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""


def save_contact_sheet(path, images: Sequence, labels: Sequence[str] | None = None, **kwargs) -> None:
    """:func:`contact_sheet` written with :func:`save_image` (atomic, PNG or JPEG by extension)."""
    save_image(path, contact_sheet(images, labels, **kwargs))
