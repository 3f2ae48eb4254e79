"""What a request asks for, checked with the command line's own types, rules and messages.

Fields are named like :class:`~jaxstyle.StyleConfig`'s fields (``image_size``, ``style_weight``...). A value is
parsed by the option type ``jaxstyle stylize`` uses for that field and the config checks itself, so an invalid
value gets the CLI's message word for word (``--style-weight must be a finite number >= 0, not -1.0``), with
the field's name alongside for the page to point at.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math

from PIL import Image

from ..cli import options
from ..errors import ConfigError, ImageError, UsageError
from ..gatys.config import INITS, StyleConfig
from ..io import images

# What an upload may be: Pillow's format names (the sniffed bytes decide, never the file name or its MIME type).
ACCEPTED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP", "TIFF": "TIFF"}
# The weights a sweep may vary here (two at most, three values each): the scalar loss weights.
SWEEP_FIELDS = ("content_weight", "style_weight", "tv_weight")
MAX_SWEEP_AXES = 2
MAX_SWEEP_VALUES = 3


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the studio accepts (``jaxstyle serve`` options)."""

    max_upload_bytes: int = 16 << 20  # one uploaded file
    max_request_bytes: int = 48 << 20  # a whole request
    max_pixels: int = 16_000_000  # an uploaded image, read from its header before decoding
    max_image_size: int = 1024  # the longest output side a run may ask for
    max_styles: int = 4
    max_queued: int = 16  # runs waiting (each holds its decoded images until it ends)


class FieldError(UsageError):
    """A request field is wrong: the CLI's message, and which field (``None``: the request as a whole)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def _parse(name: str, text: str):
    """``text`` as the CLI's option for ``name`` parses it (argparse's message on failure)."""
    kwargs = options.CONFIG_OPTIONS[name][0]
    if name == "init" and text not in INITS:  # the CLI's init image has no upload here
        raise FieldError(f"argument {options.flag(name)}: expected one of {', '.join(INITS)}, got {text!r}", name)
    kind = kwargs.get("type")
    if kind is None:
        return text  # a choice: the config checks it, with the CLI's message
    try:
        value = kind(text)
    except argparse.ArgumentTypeError as e:
        raise FieldError(f"argument {options.flag(name)}: {e}", name) from None
    return None if value == options.ORIGINAL else value


def config_from_fields(fields: dict[str, str], max_image_size: int | None = None) -> StyleConfig:
    """The :class:`StyleConfig` of the given fields (empty ones are not given: StyleConfig's default applies)."""
    given = {name: _parse(name, text.strip()) for name, text in fields.items()
             if name in options.CONFIG_OPTIONS and text.strip()}
    try:
        config = StyleConfig(**given)
    except ConfigError as e:
        raise FieldError(e.renamed(options.flag), e.field) from None
    if max_image_size and (config.image_size is None or config.image_size > max_image_size):
        raise FieldError(f"{options.flag('image_size')} must be <= {max_image_size} in this studio, not "
                         f"{config.image_size or 'original'} (jaxstyle serve --max-image-size raises the limit)",
                         "image_size")
    return config


def check_inputs(config: StyleConfig, content, styles: list) -> None:
    """The CLI's checks of the inputs against the config: the images the mode needs, one blend weight each."""
    try:
        options.check_inputs(config, content, styles)
    except ConfigError as e:
        raise FieldError(e.renamed(options.flag), e.field) from None
    except UsageError as e:
        raise FieldError(str(e), "content" if "--content" in str(e) else "style") from None


def sweep_axes(fields: dict[str, str], config: StyleConfig) -> dict[str, tuple[float, ...]]:
    """``sweep_<field>`` = a comma list of 2-3 values for up to two loss weights; each value checked by the
    config (the CLI's message)."""
    axes = {}
    for name in SWEEP_FIELDS:
        text = fields.get(f"sweep_{name}", "").strip()
        if not text:
            continue
        try:
            values = options.number_list(text)
        except argparse.ArgumentTypeError as e:
            raise FieldError(f"sweep of {options.flag(name)}: {e}", f"sweep_{name}") from None
        if not 2 <= len(values) <= MAX_SWEEP_VALUES:
            raise FieldError(f"sweep of {options.flag(name)}: give 2 to {MAX_SWEEP_VALUES} values, not "
                             f"{len(values)}", f"sweep_{name}")
        for v in values:
            try:
                dataclasses.replace(config, **{name: v})
            except ConfigError as e:
                raise FieldError(e.renamed(options.flag), f"sweep_{name}") from None
        axes[name] = values
    if len(axes) > MAX_SWEEP_AXES:
        raise FieldError(f"a sweep varies at most {MAX_SWEEP_AXES} weights, not {len(axes)}", None)
    return axes


def sniff(field: str, filename: str, data: bytes) -> str:
    """The accepted image format of an upload's bytes; else a :class:`FieldError` (what was sent, what to do)."""
    if not data:
        raise FieldError(f"{field}: {filename or 'upload'} is empty — choose an image file", field)
    try:
        with Image.open(io.BytesIO(data)) as im:
            kind = im.format
    except Exception:  # noqa: BLE001 -- any Pillow failure on untrusted bytes means "not an image we take"
        kind = None
    if kind not in ACCEPTED_FORMATS:
        raise FieldError(f"{field}: {filename or 'upload'} is not an image of an accepted type — use "
                         f"{', '.join(ACCEPTED_FORMATS.values())}", field)
    return kind


def load_upload(field: str, filename: str, path: str, max_pixels: int | None):
    """An upload saved at ``path`` read with the CLI's image loader; its messages name the upload, not the
    server's file."""
    try:
        return images.load_image(path, max_pixels=max_pixels, role=field)
    except ImageError as e:
        raise FieldError(f"{filename or field}: {e.problem}" + (f" — {e.fix}" if e.fix else ""), field) from None


def command_line(config: StyleConfig, content: str | None, styles: list[str], weights: str,
                 skip=()) -> list[str]:
    """The ``jaxstyle stylize`` arguments of this run: every field that differs from StyleConfig's default
    (``skip``: fields given otherwise, a sweep's)."""
    args = ["jaxstyle", "stylize"]
    if content:
        args += ["--content", content]
    if styles:
        args += ["--style", *styles]
    args += ["--weights", weights, "-o", "out.png"]
    for f in dataclasses.fields(StyleConfig):
        value = getattr(config, f.name)
        if value != f.default and f.name not in skip:
            shown = options.ORIGINAL if value is None and f.name == "image_size" else options.show(value)
            args += [options.flag(f.name), _number(shown)]
    return args


def _number(text: str) -> str:
    """Floats as the shortest text that reads back the same (``10.0`` -> ``10``)."""
    try:
        v = float(text)
    except ValueError:
        return text
    return f"{v:g}" if math.isfinite(v) and float(f"{v:g}") == v else text
