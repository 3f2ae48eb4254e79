"""Ctrl-C for long runs: the first press asks for a clean stop, the second aborts at once.

A clean stop happens at the next chunk boundary, where the image and optimiser state are consistent, so the
CLI can write the last good image and a final checkpoint. A second press raises KeyboardInterrupt as usual
(the driver then still keeps the last completed chunk's image).
"""

from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    """Context manager and ``should_stop`` callable for :func:`jaxstyle.gatys.run_stylize`."""

    def __init__(self, message: str = "stopping after the current chunk (Ctrl-C again to abort now)"):
        self.requested = False
        self._message = message
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{self._message}", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def __call__(self) -> bool:
        return self.requested
