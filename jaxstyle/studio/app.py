"""The studio's aiohttp application: the JSON API (docs/studio.md), Server-Sent Events, and the static page.

Why aiohttp: one well-kept package gives the HTTP server, a streaming multipart reader (so upload limits are
enforced while reading, not after), streamed responses for Server-Sent Events and safe static files, with no
separate ASGI server, form-parsing or WebSocket packages to pin.

Safety: no path in a request reaches the file system. Examples, weights and models are chosen by name from
listings the server made itself; uploads are sniffed (accepted image types only), size-limited while they are
read, saved under server-chosen names in the app's own run directory, decoded with the pixel limit and removed
at once; the run directory is removed when the app stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from aiohttp import web
from PIL import Image

from ..cli import options
from ..errors import JaxstyleError
from ..gatys.config import StyleConfig
from ..io import images
from ..io.target_cache import TargetCache
from ..nets import weights as weights_lib
from . import forms
from .forms import FieldError, Limits
from .jobs import FINAL, Run, Runner

STATIC = Path(__file__).resolve().parent / "static"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
THUMB = 160
RUNNER = web.AppKey("runner", Runner)
STUDIO = web.AppKey("studio", object)


class TooLarge(FieldError):
    status = 413


class QueueFull(FieldError):
    status = 503


def _listing(directory, suffixes) -> dict[str, str]:
    """name -> path of the files in ``directory`` with one of ``suffixes`` (requests choose by name)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return {}
    return {n: os.path.join(directory, n) for n in names
            if n.lower().endswith(suffixes) and os.path.isfile(os.path.join(directory, n))}


@dataclasses.dataclass
class Studio:
    """The app's state: its directories' listings, limits, its run directory and the loaded fast models."""

    weights_dir: str
    models_dir: str
    limits: Limits
    run_root: str
    examples_dir: str = str(EXAMPLES)
    thumbs: dict = dataclasses.field(default_factory=dict)
    fast_models: dict = dataclasses.field(default_factory=dict)

    def weights(self) -> dict[str, str]:
        return {**_listing(self.weights_dir, (".npz",)), weights_lib.RANDOM: weights_lib.RANDOM}

    def default_weights(self) -> str:
        """As the CLI: vgg19.npz, else vgg16.npz, else the random network."""
        found = self.weights()
        return next((os.path.basename(p) for p in options.DEFAULT_WEIGHTS_SEARCH
                     if os.path.basename(p) in found), weights_lib.RANDOM)

    def examples(self) -> dict[str, str]:
        return _listing(self.examples_dir, IMAGE_SUFFIXES)

    def models(self) -> dict[str, str]:
        return _listing(self.models_dir, (".npz",))

    def load_vgg(self, name: str):
        from ..nets.model import load_vgg  # noqa: PLC0415 -- the first real work of a run, in the worker

        return load_vgg(self.weights()[name])


def _pick(listing: dict, name: str, field: str, what: str) -> str:
    if name not in listing:
        shown = ", ".join(listing) or "none"
        raise FieldError(f"{field}: no {what} named {name!r} — choose one of: {shown}", field)
    return listing[name]


# ------------------------------------------------------------------------------------------------ requests

FIELD_BYTES = 4096  # a text field's longest value


async def read_form(request: web.Request, limits: Limits) -> list[tuple[str, str | None, bytes]]:
    """The multipart parts in order as ``(name, filename or None for a text field, bytes)``, the limits enforced
    while reading (413 as soon as one is passed)."""
    if request.content_length and request.content_length > limits.max_request_bytes:
        raise TooLarge(f"the request is {request.content_length / 2**20:.1f} MB, above the limit of "
                       f"{limits.max_request_bytes / 2**20:g} MB — send smaller images")
    if request.content_type != "multipart/form-data":
        raise FieldError(f"{request.method} {request.path} takes multipart/form-data, not "
                         f"{request.content_type or 'nothing'}")
    reader, parts, total = await request.multipart(), [], 0
    while (part := await reader.next()) is not None:
        if not hasattr(part, "filename"):  # a nested multipart body
            raise FieldError("nested multipart bodies are not accepted")
        limit = limits.max_upload_bytes if part.filename is not None else FIELD_BYTES
        data = bytearray()
        while chunk := await part.read_chunk():
            data += chunk
            if len(data) > limit:
                what = f"{part.filename} is larger than the upload limit of {limit / 2**20:g} MB — downscale it" \
                    if part.filename is not None else f"value is longer than {limit} bytes"
                raise TooLarge(f"{part.name}: {what}", part.name)
        total += len(data)
        if total > limits.max_request_bytes:
            raise TooLarge(f"the request is above the limit of {limits.max_request_bytes / 2**20:g} MB")
        parts.append((part.name or "", part.filename, bytes(data)))
    return parts


def _text(parts) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, filename, data in parts:
        if filename is None:
            try:
                out.setdefault(name, []).append(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise FieldError(f"{name}: not UTF-8 text", name) from None
    return out


RUN_FIELDS = {"weights", "content_example", "style_example"} | {f"sweep_{n}" for n in forms.SWEEP_FIELDS}


def build_run(studio: Studio, parts) -> Run:
    """A checked :class:`Run` from a request's parts: every check the CLI makes before computing, the images
    read (and their files removed), or a :class:`FieldError`."""
    text = _text(parts)
    unknown = sorted(set(text) - set(options.CONFIG_OPTIONS) - RUN_FIELDS)
    if unknown:
        raise FieldError(f"unknown field {unknown[0]!r} — options are named like StyleConfig's fields "
                         "(image_size, style_weight, ...); see docs/studio.md", unknown[0])
    fields = {k: v[-1] for k, v in text.items() if k != "style_example"}
    config = forms.config_from_fields(fields, studio.limits.max_image_size)
    weights = fields.get("weights", "").strip() or studio.default_weights()
    _pick(studio.weights(), weights, "weights", "converted weights file in the weights directory")
    content, styles = _sources(studio, parts)  # after _text: the fields are UTF-8
    if len(styles) > studio.limits.max_styles:
        raise FieldError(f"style: at most {studio.limits.max_styles} style images, not {len(styles)}", "style")
    forms.check_inputs(config, content, styles)
    axes = forms.sweep_axes(fields, config)
    run_id = uuid.uuid4().hex[:12]
    arrays = _read_images(studio, run_id, content, styles)
    names = {"content": content and content[1], "styles": [s[1] for s in styles]}
    return Run(config, arrays[0], arrays[1:], weights, names, axes, id=run_id)


def _sources(studio: Studio, parts):
    """The content and style images chosen, uploads and examples in the order the request gives them (blend
    weights follow that order): ``(field, name shown, path of an example or the upload's bytes)``."""
    examples = studio.examples()
    sources = {"content": [], "style": []}
    for name, filename, data in parts:
        if filename is not None:
            if name not in sources:
                raise FieldError(f"{name}: unexpected file field — upload images as content or style", name)
            forms.sniff(name, filename, data)
            sources[name].append((name, os.path.basename(filename) or name, data))
        elif name in ("content_example", "style_example") and data.strip():
            example, field = data.decode("utf-8").strip(), name.removesuffix("_example")
            path = _pick(examples, example, name, "bundled example")
            sources[field].append((field, f"examples/images/{example}", path))
    if len(sources["content"]) > 1:
        raise FieldError("content: give one content image (an upload or an example), not "
                         f"{len(sources['content'])}", "content")
    return (sources["content"] or [None])[0], sources["style"]


def _read_images(studio: Studio, run_id: str, content, styles) -> list:
    """Every image as an array (content first, None without one), read with the CLI's loader. Uploads pass
    through the run's own directory under server-chosen names and are removed before this returns."""
    directory = os.path.join(studio.run_root, run_id)
    os.makedirs(directory)
    try:
        out = []
        for i, source in enumerate([content, *styles]):
            if source is None:
                out.append(None)
                continue
            field, shown, data = source
            path = data
            if isinstance(data, bytes):
                path = os.path.join(directory, f"upload-{i}")
                with open(path, "wb") as f:
                    f.write(data)
            out.append(forms.load_upload(field, shown, path, studio.limits.max_pixels))
        return out
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ handlers


def _run(request: web.Request) -> Run:
    run = request.app[RUNNER].get(request.match_info["id"])
    if run is None:
        raise web.HTTPNotFound(reason=f"no run with id {request.match_info['id']!r}")
    return run


def _status(request: web.Request, run: Run, history_from: int = 0) -> dict:
    runner = request.app[RUNNER]
    with runner.lock:  # a consistent picture: the worker changes runs under this lock
        return run.describe(runner.position(run), history_from)


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html")


async def get_options(request: web.Request) -> web.Response:
    studio: Studio = request.app[STUDIO]
    return web.json_response({
        "defaults": {f.name: f.default for f in dataclasses.fields(StyleConfig)},
        "flags": {name: options.flag(name) for name in options.CONFIG_OPTIONS},
        "help": {name: text for name, (_, text, _) in options.CONFIG_OPTIONS.items()},
        "choices": {name: list(kw["choices"]) for name, (kw, _, _) in options.CONFIG_OPTIONS.items()
                    if "choices" in kw} | {"init": ["noise", "content", "style"]},
        "weights": list(studio.weights()), "default_weights": studio.default_weights(),
        "examples": list(studio.examples()), "models": list(studio.models()),
        "sweep_fields": list(forms.SWEEP_FIELDS), "limits": dataclasses.asdict(studio.limits)})


async def example(request: web.Request) -> web.Response:
    """A bundled example's thumbnail (JPEG, long side THUMB)."""
    studio: Studio = request.app[STUDIO]
    name = request.match_info["name"]
    path = studio.examples().get(name)
    if path is None:
        raise web.HTTPNotFound(reason=f"no bundled example named {name!r}")
    if name not in studio.thumbs:
        def thumb() -> bytes:
            with Image.open(path) as im:
                im = im.convert("RGB")
                im.thumbnail((THUMB, THUMB))
                out = io.BytesIO()
                im.save(out, format="JPEG", quality=85)
                return out.getvalue()

        studio.thumbs[name] = await asyncio.to_thread(thumb)
    return web.Response(body=studio.thumbs[name], content_type="image/jpeg")


async def create_run(request: web.Request) -> web.Response:
    studio: Studio = request.app[STUDIO]
    if request.app[RUNNER].waiting() >= studio.limits.max_queued:
        raise QueueFull(f"the queue is full ({studio.limits.max_queued} runs waiting) — wait for some to finish, "
                        "or cancel some")
    parts = await read_form(request, studio.limits)
    run = await asyncio.to_thread(build_run, studio, parts)
    request.app[RUNNER].submit(run)
    return web.json_response({"id": run.id, **_status(request, run)}, status=201)


async def list_runs(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    with runner.lock:
        runs = list(runner.runs.values())
    return web.json_response({"runs": [{k: v for k, v in _status(request, r).items() if k != "history"}
                                       for r in reversed(runs)]})


async def get_run(request: web.Request) -> web.Response:
    return web.json_response(_status(request, _run(request)))


async def cancel_run(request: web.Request) -> web.Response:
    run = _run(request)
    request.app[RUNNER].cancel(run)
    return web.json_response(_status(request, run))


async def run_image(request: web.Request) -> web.Response:
    """The current (while running) or final PNG; ``?cell=K`` a sweep's run K; ``?download=1`` as a file."""
    run = _run(request)
    data = run.image
    if "cell" in request.query:
        try:
            data = run.cells[int(request.query["cell"])].image
        except (ValueError, IndexError):
            raise web.HTTPNotFound(reason=f"run {run.id} has no cell {request.query['cell']!r}") from None
    if data is None:
        raise web.HTTPNotFound(reason=f"run {run.id} has no image yet ({run.status})")
    headers = {"Cache-Control": "no-store"}
    if request.query.get("download"):
        suffix = f"-cell{request.query['cell']}" if "cell" in request.query else ""
        headers["Content-Disposition"] = f'attachment; filename="jaxstyle-{run.id}{suffix}.png"'
    return web.Response(body=data, content_type="image/png", headers=headers)


async def run_settings(request: web.Request) -> web.Response:
    """The run's settings as a JSON file: the config in field names and the equivalent command line."""
    run = _run(request)
    weights = request.app[STUDIO].weights().get(run.weights, run.weights)  # its path, as the server was given it
    return web.Response(text=json.dumps(run.settings(weights), indent=1) + "\n", content_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="jaxstyle-{run.id}.json"'})


async def run_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the run's status whenever it changes (``history``: only the new records), until it
    ends."""
    run = _run(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    sent, last = 0, None
    while True:
        status = _status(request, run, sent)
        key = (status["version"], status["queue_position"])
        if key != last:
            last, sent = key, sent + len(status["history"])
            await response.write(f"data: {json.dumps(status)}\n\n".encode())
        if status["status"] in FINAL:
            return response
        await asyncio.sleep(0.2)


async def fast_apply(request: web.Request) -> web.Response:
    """A trained fast-style network applied to one upload: ``image`` (file), ``model`` (a name from the models
    directory), optional ``original_colors`` (on/true/1) and ``image_size`` (long side). Returns the PNG."""
    studio: Studio = request.app[STUDIO]
    parts = await read_form(request, studio.limits)
    text = {k: v[-1] for k, v in _text(parts).items()}
    path = _pick(studio.models(), text.get("model", ""), "model", "fast-style model in the models directory")
    uploads = [(n, f, d) for n, f, d in parts if f is not None]
    if len(uploads) != 1 or uploads[0][0] != "image":
        raise FieldError("image: upload exactly one image as the field image", "image")
    size = text.get("image_size", "").strip()
    if size and (not size.isdigit() or not 16 <= int(size) <= studio.limits.max_image_size):
        raise FieldError(f"image_size must be an integer from 16 to {studio.limits.max_image_size}, not {size!r}",
                         "image_size")
    _, filename, data = uploads[0]
    forms.sniff("image", filename, data)
    original = text.get("original_colors", "").lower() in ("1", "true", "on", "yes")
    return web.Response(body=await asyncio.to_thread(_apply_fast, studio, path, filename, data, size, original),
                        content_type="image/png", headers={"Cache-Control": "no-store"})


def _apply_fast(studio: Studio, model_path: str, filename: str, data: bytes, size: str, original: bool) -> bytes:
    from ..fast.inference import apply  # noqa: PLC0415 -- the fast method only when it is used
    from ..fast.model_file import load_model  # noqa: PLC0415
    from .jobs import png  # noqa: PLC0415

    if model_path not in studio.fast_models:
        studio.fast_models.clear()
        studio.fast_models[model_path] = load_model(model_path)
    arrays = _read_images(studio, uuid.uuid4().hex[:12], ("image", os.path.basename(filename or "image"), data), [])
    image = arrays[0] if not size else images.resize_long_side(arrays[0], int(size))
    return png(apply(studio.fast_models[model_path], image, original_colors=original))


# ------------------------------------------------------------------------------------------------ the app


@web.middleware
async def json_errors(request: web.Request, handler):
    """Every API error as ``{"error": one line, "field": the field or null}``, never an HTML page or a
    traceback."""
    try:
        return await handler(request)
    except FieldError as e:
        return web.json_response({"error": str(e), "field": e.field}, status=getattr(e, "status", 400))
    except JaxstyleError as e:  # a weights or model file the server could not read
        return web.json_response({"error": str(e), "field": None}, status=400 if e.exit_code == 2 else 500)
    except web.HTTPException as e:
        if not request.path.startswith("/api/") or e.status < 400:
            raise
        return web.json_response({"error": e.reason, "field": None}, status=e.status)
    except Exception as e:  # noqa: BLE001 -- a bug: said in one line, with the traceback in the server's log
        if not request.path.startswith("/api/"):
            raise
        request.app.logger.exception("internal error")
        return web.json_response({"error": f"internal error: {type(e).__name__}: {' '.join(str(e).split())}",
                                  "field": None}, status=500)


def make_app(weights_dir: str = "weights", models_dir: str = "models", limits: Limits = Limits(),
             run_dir: str | None = None, target_cache: TargetCache | None = None,
             examples_dir: str | None = None, sweep_batch: int | None = None) -> web.Application:
    """The studio. ``run_dir``: where its own run directory is made (default: the system's temp directory);
    removed, with every file in it, when the app stops. ``sweep_batch``: sweep runs per vmapped optimisation
    (default: :func:`jaxstyle.studio.jobs.sweep_batch_default`)."""
    studio = Studio(weights_dir, models_dir, limits, tempfile.mkdtemp(prefix="jaxstyle-studio-", dir=run_dir),
                    examples_dir or str(EXAMPLES))
    app = web.Application(middlewares=[json_errors], client_max_size=limits.max_request_bytes)
    app[STUDIO] = studio
    app[RUNNER] = Runner(studio.load_vgg, target_cache, sweep_batch=sweep_batch)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.router.add_get("/api/options", get_options)
    app.router.add_get("/api/examples/{name}", example)
    app.router.add_post("/api/runs", create_run)
    app.router.add_get("/api/runs", list_runs)
    app.router.add_get("/api/runs/{id}", get_run)
    app.router.add_delete("/api/runs/{id}", cancel_run)
    app.router.add_get("/api/runs/{id}/image", run_image)
    app.router.add_get("/api/runs/{id}/settings", run_settings)
    app.router.add_get("/api/runs/{id}/events", run_events)
    app.router.add_post("/api/fast", fast_apply)

    async def cleanup(app_: web.Application) -> None:
        await asyncio.to_thread(app_[RUNNER].close)
        shutil.rmtree(studio.run_root, ignore_errors=True)

    app.on_cleanup.append(cleanup)
    return app
