"""The studio in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright) loads the page,
starts a 64-px run on the bundled images, sees the progress image and the iteration counter change, and
downloads the final PNG.

Chromium is required, not optional: a missing browser fails this test with what to install (``.ci/run``
installs it in CI). Only ``JAXSTYLE_BROWSER_TEST=skip`` skips it, for a machine that cannot have Chromium.
"""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

if os.environ.get("JAXSTYLE_BROWSER_TEST") == "skip":
    pytest.skip("JAXSTYLE_BROWSER_TEST=skip", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

from jaxstyle.studio.app import make_app  # noqa: E402
from jaxstyle.studio.server import Background  # noqa: E402

ITERATIONS = 8  # a progress report every 2 iterations


def chromium() -> str:
    path = os.environ.get("JAXSTYLE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.isfile(path):
        pytest.fail(f"no Chromium at {path}: install Debian's package (apt-get install -y chromium; .ci/run does "
                    "this) or set JAXSTYLE_CHROMIUM to a Chromium binary (JAXSTYLE_BROWSER_TEST=skip skips this "
                    "test)", pytrace=False)
    return path


def test_a_run_in_the_browser(tmp_path):
    app = make_app(str(tmp_path), str(tmp_path), run_dir=str(tmp_path))  # no weights there: the random VGG
    with Background(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(accept_downloads=True)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.click('#content-examples img[data-example="chelsea.jpg"]')
            page.click('#style-examples img[data-example="starry_night.jpg"]')
            page.fill("#f-image_size", "64")
            page.fill("#f-iterations", str(ITERATIONS))
            page.click("#start")
            # The live image appears, then changes while the counter moves on.
            page.wait_for_function("document.getElementById('live').src.includes('/image?v=')", timeout=120_000)
            first_src, first_count = page.get_attribute("#live", "src"), page.inner_text("#iteration")
            page.wait_for_function(f"document.getElementById('live').getAttribute('src') !== {first_src!r}",
                                   timeout=60_000)
            page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=120_000)
            assert page.inner_text("#iteration") == f"{ITERATIONS} / {ITERATIONS}" != first_count
            assert page.inner_text("#error") == "" and not errors
            # The final image shows. The browser fetches it after the status reads "done", so wait for the load
            # instead of reading naturalWidth at once (0 while the request is in flight: a race seen in CI).
            page.wait_for_function("(img => img.complete && img.naturalWidth > 0)(document.getElementById('live'))",
                                   timeout=30_000)
            assert page.evaluate("document.getElementById('live').naturalWidth") == 64
            with page.expect_download() as download:
                page.click("#download-png")
            path = download.value.path()
            assert download.value.suggested_filename.endswith(".png")
            image = np.asarray(Image.open(io.BytesIO(open(path, "rb").read())))
            assert image.shape == (43, 64, 3) and image.std() > 0
        finally:
            browser.close()
