"""uvicorn's HTTP/1.1 protocol (h11) with JSON errors and a time limit on request headers.

A request that cannot even be parsed (a malformed Content-Length, two different lengths, a bad
chunk size, a broken request line) is answered by the protocol itself, before the app sees it,
and uvicorn would answer it in plain text. And uvicorn waits for request headers without a
limit, so a client that sends half a header and then nothing holds its connection forever:
here the headers must be complete within the upload grace time (ABPN_READ_TIMEOUT_S) from the
connection's start or, on a kept-alive connection, from the next request's first byte, or the
connection gets a JSON 408 (nothing at all when not a byte came) and is closed. Between
requests a kept-alive connection idles under uvicorn's keep-alive timeout (ABPN_KEEP_ALIVE_S):
closing it sooner, as a header deadline would, races the client's reuse of it, and the request
it was sending on it is lost.

Pinning this class also keeps the server on h11 when httptools happens to be installed, so
every deployment frames requests the same way. It extends uvicorn's and h11's internals, so
both are pinned in pyproject.toml to the range tests/service/test_uvicorn_contract.py passed on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


_MALFORMED = _error_body(
    "bad_request", "malformed HTTP request (request line, headers or body framing)"
)
_HEADERS_TIMEOUT = _error_body(
    "request_timeout", "the request headers did not arrive in time (ABPN_READ_TIMEOUT_S)"
)


class JsonErrorH11Protocol(H11Protocol):
    """H11Protocol whose own errors have the service's JSON body, with a header deadline.
    `header_timeout_s` is set by `protocol_class`."""

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._waiting_after: RequestResponseCycle | None = None
        self._between_requests = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection and start waiting for the first request's headers."""
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the header deadline with the connection."""
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        """After each response the connection idles under the keep-alive timeout; the next
        request's headers get their time from its first byte (`data_received`)."""
        super().on_response_complete()
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._between_requests = not self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        """Start the next request's header deadline with its first byte."""
        if self._between_requests and data:
            self._between_requests = False
            self._await_headers()
        super().data_received(data)

    def _await_headers(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._waiting_after = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _headers_late(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if self.transport.is_closing() or not idle or self.cycle is not self._waiting_after:
            return  # a request has started since (or is still being answered): not late
        partial, _ = self.conn.trailing_data
        if partial:
            self._write_and_close(408, b"Request Timeout", _HEADERS_TIMEOUT)
        else:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """Answer 400 with the JSON body and close, as uvicorn does; `msg` is uvicorn's own
        plain-text wording, already logged by it."""
        response = h11.Response(
            status_code=400, headers=_json_headers(_MALFORMED), reason=b"Bad Request"
        )
        try:
            self.transport.write(self.conn.send(response))
            self.transport.write(self.conn.send(h11.Data(data=_MALFORMED)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            # A response had already started on this connection: nothing more can be said.
            pass
        if self.cycle is not None:
            # The body's framing broke while the app was already handling the request: from
            # now on it sees a client that left, instead of failing (and logging a traceback)
            # when it answers on a connection that has been answered and closed already.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()

    def _write_and_close(self, status: int, reason: bytes, body: bytes) -> None:
        # Written by hand: h11 cannot frame a response to a request it has not parsed yet.
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        head += b"".join(b"%s: %s\r\n" % pair for pair in _json_headers(body))
        self.transport.write(head + b"\r\n" + body)
        self.transport.close()


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]


def protocol_class(header_timeout_s: float) -> type[JsonErrorH11Protocol]:
    """The protocol class for uvicorn.Config(http=...), with this header deadline."""
    return type(
        "JsonErrorH11Protocol", (JsonErrorH11Protocol,), {"header_timeout_s": header_timeout_s}
    )
