"""Running the studio: in the foreground (``jaxstyle serve``) or on a background thread (tests, notebooks)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import threading

from aiohttp import web

LOOPBACK = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds to this machine only."""
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_of(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


async def _start(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()  # the app's run directory goes too
        raise
    return runner


def serve_forever(app: web.Application, host: str, port: int, on_ready=print, on_stop=None) -> None:
    """Serve until Ctrl-C or SIGTERM; ``on_ready(url)`` once listening (port 0: a free port), ``on_stop()`` when
    stopping begins (the current run ends at its chunk's end; the app's files are removed after it)."""
    async def main():
        runner = await _start(app, host, port)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' event loop
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        on_ready(url_of(runner))
        try:
            await stop.wait()
        finally:
            if on_stop is not None:
                on_stop()
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


class Background:
    """The app served from a daemon thread: ``with Background(app) as url: ...`` (stops and cleans up after)."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0):
        self.app, self.host, self.port = app, host, port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="jaxstyle-studio-http", daemon=True)
        self.url = ""
        self._runner = None

    def __enter__(self) -> str:
        self.thread.start()
        self._runner = asyncio.run_coroutine_threadsafe(_start(self.app, self.host, self.port), self.loop).result()
        self.url = url_of(self._runner)
        return self.url

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
