"""The studio's JSON API end to end, on a real server on 127.0.0.1 (random VGG, 64 px, few iterations):
start, live progress over Server-Sent Events, queue, cancel, failure, result, sweep grid, and the errors (bad
option with the CLI's own message, bad image, oversized upload, unknown id, paths that try to leave)."""

from __future__ import annotations

import dataclasses
import io
import os
import shlex
import time

import jax
import numpy as np
import pytest
from PIL import Image

from jaxstyle import fast
from jaxstyle.cli import build_parser, main, options
from jaxstyle.gatys.config import StyleConfig
from jaxstyle.studio.app import make_app
from jaxstyle.studio.forms import Limits
from jaxstyle.studio.server import Background

from studio_client import events, get_json, post, request, request_multipart

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "images")
PAIR = [("content_example", "chelsea.jpg"), ("style_example", "starry_night.jpg"), ("image_size", "64")]
UPLOAD_LIMIT = 200_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    weights = tmp_path_factory.mktemp("weights")  # empty: the random network is the default
    runs, models = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("models")
    # A tiny network with random parameters (made from the shapes: Flax's eager init compiles op by op, a minute
    # on a loaded machine): the studio's path to fast.apply, not art.
    net = fast.TransformerNet(n_styles=1, width=4, n_residual=1)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda a: rng.normal(0, 0.2, a.shape).astype(np.float32),
                          jax.eval_shape(lambda: fast.initial_params(net)))
    fast.save_model(models / "tiny.npz", fast.FastModel(params=params, net=net, meta={}))
    app = make_app(str(weights), str(models), Limits(max_upload_bytes=UPLOAD_LIMIT, max_queued=2), run_dir=str(runs))
    with Background(app) as url:
        yield url, runs, models
    assert os.listdir(runs) == [], "the app's run directory is removed when it stops"


def wait(url: str, run_id: str, until, timeout: float = 120) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status, body = get_json(f"{url}api/runs/{run_id}")
        assert status == 200
        if until(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not get there in {timeout} s: {body}")


def png_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def cli_error(capsys, tmp_path, *flags) -> str:
    """What ``jaxstyle stylize`` prints for these flags (checked before anything is computed)."""
    try:  # argparse's own errors exit; the config's are returned
        code = main(["stylize", "--content", os.path.join(EXAMPLES, "chelsea.jpg"), "--style",
                     os.path.join(EXAMPLES, "starry_night.jpg"), "-o", str(tmp_path / "out.png"), *flags])
    except SystemExit as e:
        code = e.code
    assert code == 2
    return capsys.readouterr().err.strip()


def test_page_and_options(server):
    url, *_ = server
    status, _, html = request(url)
    assert status == 200 and b"jaxstyle studio" in html
    assert request(url + "static/app.js")[0] == 200
    status, o = get_json(url + "api/options")
    assert o["defaults"] == {f.name: (list(f.default) if isinstance(f.default, tuple) else f.default)
                             for f in dataclasses.fields(StyleConfig)}
    assert o["weights"] == ["random"] and o["default_weights"] == "random"
    assert "chelsea.jpg" in o["examples"] and o["models"] == ["tiny.npz"]


def test_errors_are_json_and_say_what_to_do(server, capsys, tmp_path):
    url, runs, _ = server
    # Options: the CLI's message, word for word, and the field to point at.
    status, body = post(url + "api/runs", PAIR + [("style_weight", "-1")])
    assert (status, body["field"]) == (400, "style_weight")
    assert cli_error(capsys, tmp_path, "--style-weight", "-1") == f"error: {body['error']}"
    status, body = post(url + "api/runs", PAIR + [("content_weight", "lots")])
    assert (status, body["field"]) == (400, "content_weight")
    assert body["error"] in cli_error(capsys, tmp_path, "--content-weight", "lots")
    status, body = post(url + "api/runs", PAIR + [("style_layers", "relu9_9")])
    assert status == 400 and cli_error(capsys, tmp_path, "--style-layers", "relu9_9") == f"error: {body['error']}"
    status, body = post(url + "api/runs", PAIR[:1] + PAIR[2:])
    assert status == 400 and body["error"] == "--style is required (except with --mode content)"
    assert post(url + "api/runs", PAIR + [("colour", "red")])[0] == 400  # an unknown field
    assert post(url + "api/runs", PAIR + [("weights", "../weights/vgg19.npz")])[1]["field"] == "weights"
    assert post(url + "api/runs", PAIR + [("sweep_style_weight", "1,2,3,4")])[1]["field"] == "sweep_style_weight"
    # Images: only image types, decoded with the CLI's loader; the message names the upload, not a server path.
    status, body = post(url + "api/runs", PAIR[:1], [("style", "notes.png", b"just some text")])
    assert (status, body["field"]) == (400, "style") and "not an image of an accepted type" in body["error"]
    whole = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(whole, format="PNG")
    status, body = post(url + "api/runs", PAIR[:1], [("style", "cut.png", whole.getvalue()[:-30])])
    assert status == 400 and body["error"].startswith("cut.png: ") and str(runs) not in body["error"]
    status, body = post(url + "api/runs", PAIR[:1], [("style", "big.png", b"\x89PNG" + bytes(UPLOAD_LIMIT))])
    assert status == 413 and "upload limit" in body["error"]
    assert request(url + "api/runs", "POST", b"{}", {"Content-Type": "application/json"})[0] == 400
    assert os.listdir(runs) and all(os.listdir(os.path.join(runs, d)) == [] for d in os.listdir(runs))
    # Unknown ids and paths: JSON 404s, nothing outside the app's own files is served.
    for path, method in (("api/runs/nope", "GET"), ("api/runs/nope", "DELETE"), ("api/runs/nope/image", "GET"),
                         ("api/runs/nope/events", "GET"), ("api/runs/nope/settings", "GET"), ("api/nothing", "GET"),
                         ("api/examples/..%2F..%2Fpyproject.toml", "GET")):
        status, body = get_json(url + path, method)
        assert status == 404 and body["error"], path
    assert request(url + "static/..%2F..%2F__init__.py")[0] in (403, 404)
    assert request(url + "static/../app.py")[0] in (403, 404)


def test_a_run_streams_progress_and_ends_with_its_image_and_settings(server):
    url, *_ = server
    status, created = post(url + "api/runs", PAIR + [("iterations", "12"), ("tv_weight", "0.5")])
    assert status == 201 and created["status"] in ("queued", "running")
    run_id, seen, images = created["id"], [], {}
    for event in events(f"{url}api/runs/{run_id}/events"):
        seen.append(event)
        if event["has_image"] and event["iteration"] not in images:
            images[event["iteration"]] = request(f"{url}api/runs/{run_id}/image")[2]
    assert seen[-1]["status"] == "done" and seen[-1]["error"] == ""
    history = [r["iteration"] for e in seen for r in e["history"]]  # each record sent once, in order
    assert history == sorted(set(history)) and history[-1] == 12 and len(history) >= 3
    assert all(r["total"] > 0 for e in seen for r in e["history"])
    final = get_json(f"{url}api/runs/{run_id}")[1]
    assert [r["iteration"] for r in final["history"]] == history and final["iteration"] == 12
    status, headers, data = request(f"{url}api/runs/{run_id}/image?download=1")
    assert status == 200 and headers["Content-Type"] == "image/png" and "attachment" in headers["Content-Disposition"]
    assert png_of(data).shape == (43, 64, 3)  # chelsea.jpg is 451 x 300
    early = min(images)
    assert early < 12 and not np.array_equal(png_of(images[early]), png_of(data)), "the image is live"
    # The settings file: the whole config in field names, and a command line the CLI parses to the same config.
    settings = get_json(f"{url}api/runs/{run_id}/settings")[1]
    config = StyleConfig(**settings["config"])
    assert (config.image_size, config.iterations, config.tv_weight) == (64, 12, 0.5)
    args = build_parser().parse_args(shlex.split(settings["command"])[1:])
    assert options.config_from_args(args) == config and args.weights == "random"
    assert args.content == "examples/images/chelsea.jpg" and args.style == ["examples/images/starry_night.jpg"]


def test_queue_cancel_and_a_failed_run_leave_the_server_working(server):
    url, *_ = server
    long_run = post(url + "api/runs", PAIR + [("iterations", "50")])[1]["id"]  # progress every 2 iterations
    diverging = post(url + "api/runs", PAIR + [("iterations", "4"), ("style_weight", "1e38")])[1]["id"]
    upload = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(upload, format="PNG")
    waiting = post(url + "api/runs", PAIR + [("iterations", "50")], [("style", "mine.png", upload.getvalue())])[1]["id"]
    wait(url, long_run, lambda s: s["iteration"] > 0)
    assert get_json(f"{url}api/runs/{diverging}")[1]["queue_position"] == 1
    queue = {r["id"]: r["queue_position"] for r in get_json(url + "api/runs")[1]["runs"]}
    assert (queue[long_run], queue[diverging], queue[waiting]) == (None, 1, 2)
    status, body = post(url + "api/runs", PAIR + [("iterations", "2")])
    assert status == 503 and body["error"].startswith("the queue is full (2 runs waiting)")
    assert get_json(f"{url}api/runs/{waiting}", "DELETE")[1]["status"] == "cancelled"  # queued: at once
    settings = get_json(f"{url}api/runs/{waiting}/settings")[1]  # styles in the request's order (blend weights)
    assert settings["styles"] == ["examples/images/starry_night.jpg", "mine.png"]
    get_json(f"{url}api/runs/{long_run}", "DELETE")
    stopped = wait(url, long_run, lambda s: s["status"] != "running", timeout=30)
    assert stopped["status"] == "cancelled" and 0 < stopped["iteration"] < 50 and stopped["has_image"]
    failed = wait(url, diverging, lambda s: s["status"] in ("done", "failed"))
    assert failed["status"] == "failed" and "\n" not in failed["error"]
    assert failed["error"].startswith("loss became non-finite at iteration ") and "style" in failed["error"]
    assert failed["error"].endswith("— lower --style-weight, --content-weight or --learning-rate")
    after = post(url + "api/runs", PAIR + [("iterations", "2")])[1]["id"]
    assert wait(url, after, lambda s: s["status"] in ("done", "failed"))["status"] == "done"


def test_a_sweep_fills_its_grid(server):
    url, *_ = server
    status, created = post(url + "api/runs", PAIR + [("iterations", "2"), ("sweep_style_weight", "0,1000"),
                                                     ("sweep_tv_weight", "0,10")])
    assert status == 201 and created["kind"] == "sweep" and len(created["cells"]) == 4
    done = wait(url, created["id"], lambda s: s["status"] in ("done", "failed", "cancelled"))
    assert done["status"] == "done" and [c["status"] for c in done["cells"]] == ["done"] * 4
    assert done["iteration"] == done["iterations"] == 8  # four runs of two iterations
    assert [c["settings"] for c in done["cells"]] == [{"style_weight": sw, "tv_weight": tv}
                                                      for sw in (0.0, 1000.0) for tv in (0.0, 10.0)]
    cells = [png_of(request(f"{url}api/runs/{created['id']}/image?cell={k}")[2]) for k in range(4)]
    assert cells[0].shape == (43, 64, 3) and not np.array_equal(cells[0], cells[2])  # one row from the other
    assert get_json(f"{url}api/runs/{created['id']}/image?cell=7")[0] == 404
    command = shlex.split(get_json(f"{url}api/runs/{created['id']}/settings")[1]["command"])
    args = build_parser().parse_args(command[1:])  # the same grid on the command line
    assert command[:2] == ["jaxstyle", "sweep"] and (args.style_weight, args.tv_weight) == ([0, 1000], [0, 10])


def test_a_fast_style_model_applies_to_an_upload(server):
    url, *_ = server
    upload = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(upload, format="PNG")
    status, headers, data = request_multipart(url + "api/fast", [("model", "tiny.npz")],
                                              [("image", "photo.png", upload.getvalue())])
    assert status == 200 and headers["Content-Type"] == "image/png"
    model = fast.load_model(server[2] / "tiny.npz")
    expected = np.round(fast.apply(model, pixels.astype(np.float32) / 255) * 255)
    assert np.abs(png_of(data).astype(float) - expected).max() <= 1
    status, body = post(url + "api/fast", [("model", "../tiny.npz")], [("image", "photo.png", upload.getvalue())])
    assert (status, body["field"]) == (400, "model")


def test_only_loopback_addresses_count_as_private():
    from jaxstyle.studio.server import is_loopback

    assert all(map(is_loopback, ("127.0.0.1", "127.3.4.5", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "studio.example")))
