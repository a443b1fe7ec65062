"""Raw-socket clients of the hostile tests: uploads that stall or lie about their length, and a
reader that parses whatever comes back (status, headers, body) within a bound."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass


@dataclass
class Answer:
    """One HTTP response as it came off the socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def error_code(self) -> str:
        """The `error.code` of a JSON error body (AssertionError when the body is not one)."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        error = json.loads(self.body)["error"]
        assert isinstance(error["message"], str), error
        return error["code"]


def connect(port: int, timeout: float = 30.0) -> socket.socket:
    """A connection to the server on 127.0.0.1."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def request_head(
    method: str, target: str, headers: dict[str, str], length: int | None = None
) -> bytes:
    """The request line and headers, with Content-Length when `length` is given."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_answer(sock: socket.socket, timeout: float, head: bool = False) -> Answer | None:
    """The final response on `sock` (interim 1xx ones skipped), or None if none came within
    `timeout` seconds (or the server closed without one). The answer to a HEAD request
    (`head`) has no body, whatever its Content-Length says."""
    deadline = time.monotonic() + timeout
    received = b""
    while True:
        while b"\r\n\r\n" not in received:
            chunk = _recv(sock, deadline)
            if not chunk:
                return None
            received += chunk
        top, _, body = received.partition(b"\r\n\r\n")
        status_line, *lines = top.decode("latin-1").split("\r\n")
        if not status_line.split()[1].startswith("1"):
            break
        received = body
    headers = {}
    for line in lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = 0 if head else int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = _recv(sock, deadline)
        if not chunk:
            return None
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body[:length])


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return b""
    sock.settimeout(remaining)
    try:
        return sock.recv(65536)
    except (TimeoutError, ConnectionResetError):
        return b""
