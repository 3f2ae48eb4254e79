"""A small client for the studio's JSON API in tests: multipart POSTs and JSON answers over urllib."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid


def request(url: str, method: str = "GET", body: bytes | None = None, headers=None) -> tuple[int, dict, bytes]:
    """``(status, headers, body)``; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str, method: str = "GET") -> tuple[int, dict]:
    status, headers, body = request(url, method)
    assert headers["Content-Type"].startswith("application/json"), (url, headers, body[:200])
    return status, json.loads(body)


def post(url: str, fields=(), files=()) -> tuple[int, dict]:
    """multipart/form-data: ``fields`` [(name, text)], ``files`` [(name, filename, bytes)]; a JSON answer."""
    status, headers, answer = request_multipart(url, fields, files)
    assert headers["Content-Type"].startswith("application/json"), (headers, answer[:200])
    return status, json.loads(answer)


def request_multipart(url: str, fields=(), files=()) -> tuple[int, dict, bytes]:
    """POST multipart/form-data; ``(status, headers, body)``."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in fields:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, filename, data in files:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return request(url, "POST", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def events(url: str):
    """The Server-Sent Events of ``url``, parsed, until the stream ends."""
    with urllib.request.urlopen(url, timeout=120) as r:
        for line in r:
            if line.startswith(b"data: "):
                yield json.loads(line[6:])
