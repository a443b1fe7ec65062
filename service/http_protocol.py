"""uvicorn's HTTP/1.1 protocol (h11) with JSON errors: a request that cannot even be parsed
(a malformed Content-Length, two different lengths, a bad chunk size, a broken request line)
is answered by the protocol itself, before the app sees it, and uvicorn would answer it in
plain text. Pinning this class also keeps the server on h11 when httptools happens to be
installed, so every deployment frames requests the same way."""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_MALFORMED = json.dumps(
    {
        "error": {
            "code": "bad_request",
            "message": "malformed HTTP request (request line, headers or body framing)",
        }
    }
).encode()


class JsonErrorH11Protocol(H11Protocol):
    """H11Protocol whose 400 for an unparseable request has the service's JSON error body."""

    def send_400_response(self, msg: str) -> None:
        """Answer 400 with the JSON body and close, as uvicorn does; `msg` is uvicorn's own
        plain-text wording, already logged by it."""
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_MALFORMED)).encode()),
            (b"connection", b"close"),
        ]
        response = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
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
