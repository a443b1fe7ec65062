"""Reading the uploaded image: a raw image body or a multipart form field `image`, under the
body limit (checked against Content-Length before reading, and counted while reading for
chunked uploads), the upload deadline (`UploadClock`), the request's deadline and the memory
budget, plus watching for the client to go away."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive

from model.photo import format_for_media_type
from service.errors import ServiceError, unavailable
from service.memory_budget import Lease

_MULTIPART = "multipart/form-data"
# Part types that say nothing about the data: the bytes are sniffed instead.
_GENERIC_TYPES = {"", "application/octet-stream"}
_FORM_FIELDS_MAX = 16


@dataclass(frozen=True)
class UploadClock:
    """The deadline rule of one upload, from `started` (time.monotonic(), the arrival).

    A body gets `grace_s` seconds, then must keep arriving at `min_rate` bytes per second on
    average. A client that stalls, trickles bytes or declares more than it sends is cut at
    `grace_s` plus what it did send over the rate, so it holds its queue place for bounded time;
    an honest slow upload of N bytes gets `grace_s + N / min_rate` seconds.
    """

    started: float
    grace_s: float
    min_rate: int
    """Bytes per second."""

    def due(self, received: int) -> float:
        """time.monotonic() by which more than `received` bytes must have arrived (or the body
        ended)."""
        return self.started + self.grace_s + received / self.min_rate

    def elapsed(self) -> float:
        """Seconds since the upload started."""
        return time.monotonic() - self.started


class BodyKind(enum.Enum):
    """How the image arrives."""

    RAW = "raw"
    MULTIPART = "multipart"


@dataclass
class Upload:
    """The image bytes and the other form fields (empty for a raw body)."""

    data: bytes
    fields: dict[str, str]


def unsupported(message: str) -> ServiceError:
    """A 415 naming what is accepted."""
    return ServiceError(
        415,
        "unsupported_media_type",
        f"{message}; send image/jpeg, image/png, image/webp or image/tiff as the body, "
        "or a multipart/form-data field 'image'",
    )


def check_headers(request: Request, max_body_bytes: int) -> BodyKind:
    """Refuse by the headers alone: a missing or unsupported Content-Type (415), or a declared
    length over the limit (413), before any byte of the body is read."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if not media:
        raise unsupported("the Content-Type header is missing")
    if media == _MULTIPART:
        kind = BodyKind.MULTIPART
    elif format_for_media_type(media) is not None:
        kind = BodyKind.RAW
    else:
        raise unsupported(f"{media} is not supported")
    length = declared_length(request)
    if length is not None and length > max_body_bytes:
        raise body_too_large(max_body_bytes)
    return kind


def declared_length(request: Request) -> int | None:
    """The body's Content-Length, or None for a chunked body (uvicorn refuses a malformed one
    before the app sees it)."""
    length = request.headers.get("content-length")
    return int(length) if length is not None and length.isdigit() else None


def body_too_large(limit: int) -> ServiceError:
    """The 413 for a body over `limit` bytes."""
    return ServiceError(413, "body_too_large", f"the request body is over {limit} bytes")


def upload_timeout(received: int, clock: UploadClock) -> ServiceError:
    """The 408 for an upload that fell behind its deadline; the connection is closed, since
    the rest of the body may never come."""
    return ServiceError(
        408,
        "upload_timeout",
        f"the upload stalled: {received} bytes arrived in {clock.elapsed():.1f} s; a body gets "
        f"{clock.grace_s:g} s plus 1 s per {clock.min_rate} bytes (ABPN_READ_TIMEOUT_S, "
        "ABPN_MIN_UPLOAD_RATE)",
        {"Connection": "close"},
    )


async def _receive_by(receive: Receive, due: float, cut: asyncio.Event) -> Message:
    """The next ASGI message, unless `due` (time.monotonic()) passes or `cut` is set first."""
    receiving = asyncio.ensure_future(receive())
    cutting = asyncio.ensure_future(cut.wait())
    try:
        done, _ = await asyncio.wait(
            {receiving, cutting},
            timeout=max(0.0, due - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        cutting.cancel()
        receiving.cancel()  # no-op once done; uvicorn's receive keeps unread bytes buffered
    if receiving in done:
        return receiving.result()
    if cutting in done:
        error = unavailable("shutting_down", "the service is shutting down; the upload was cut")
        error.headers["Connection"] = "close"
        raise error
    raise TimeoutError


def upload_past_deadline(received: int, clock: UploadClock) -> ServiceError:
    """The 504 for an upload still arriving at the request's deadline; the connection is
    closed, since the rest of the body is not read."""
    return ServiceError(
        504,
        "deadline_exceeded",
        f"the request's deadline passed during the upload ({received} bytes in "
        f"{clock.elapsed():.1f} s)",
        {"Connection": "close"},
    )


@dataclass(frozen=True)
class UploadLimits:
    """What bounds one upload: its size, its pace, the request's deadline, and the memory."""

    max_bytes: int
    clock: UploadClock
    deadline: float
    """time.monotonic() of the request's deadline: an upload still arriving then gets 504."""
    lease: Lease
    """Grown by the body's bytes as they arrive, beyond `prepaid`."""
    prepaid: int = 0
    """Bytes already taken from the lease for the body (its declared length)."""


def body_cost(kind: BodyKind, length: int) -> int:
    """Bytes a body of `length` holds: a multipart part is spooled, then read, so twice."""
    return 2 * length if kind is BodyKind.MULTIPART else length


async def _limited(
    request: Request, kind: BodyKind, limits: UploadLimits, cut: asyncio.Event
) -> AsyncIterator[bytes]:
    """The body's chunks, stopping with 413 as soon as more than `limits.max_bytes` arrived,
    408 when the upload falls behind its clock, 504 at the deadline, 503 when `cut` is set (the
    drain is ending) or the memory budget is spent."""
    total, paid = 0, limits.prepaid
    more = True
    while more:
        due = min(limits.clock.due(total), limits.deadline)
        try:
            message = await _receive_by(request.receive, due, cut)
        except TimeoutError:
            if due == limits.deadline:
                raise upload_past_deadline(total, limits.clock) from None
            raise upload_timeout(total, limits.clock) from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        total += len(chunk)
        if total > limits.max_bytes:
            raise body_too_large(limits.max_bytes)
        cost = body_cost(kind, total)
        if cost > paid:
            try:
                limits.lease.grow(cost - paid, "the upload")
            except ServiceError as refused:
                refused.headers["Connection"] = "close"  # the rest of the body is not read
                raise
            paid = cost
        if chunk:
            yield chunk


async def read_upload(
    request: Request, kind: BodyKind, limits: UploadLimits, cut: asyncio.Event
) -> Upload:
    """Read the image under its limits, unless `cut` is set. Raises ServiceError (400, 408,
    413, 415, 422, 503, 504) or ClientDisconnect."""
    chunks = _limited(request, kind, limits, cut)
    if kind is BodyKind.RAW:
        data = b"".join([chunk async for chunk in chunks])
        fields: dict[str, str] = {}
    else:
        data, fields = await _read_form(request, chunks)
    if not data:
        raise ServiceError(400, "invalid_image", "the image is empty")
    return Upload(data, fields)


class _EndCheckingParser(MultiPartParser):
    """Starlette's multipart parser, also noting whether the closing boundary came: without
    it the body was cut short, which the parser itself lets pass."""

    ended = False

    def on_end(self) -> None:
        """Called by python-multipart at the closing boundary only."""
        super().on_end()
        self.ended = True


async def _read_form(
    request: Request, chunks: AsyncIterator[bytes]
) -> tuple[bytes, dict[str, str]]:
    parser = _EndCheckingParser(request.headers, chunks, max_files=1, max_fields=_FORM_FIELDS_MAX)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ServiceError(400, "invalid_multipart", str(exc)) from exc
    try:
        if not parser.ended:
            raise ServiceError(
                400, "invalid_multipart", "the multipart body ends before its closing boundary"
            )
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise ServiceError(
                422, "invalid_parameter", "form.image: a file field 'image' is required"
            )
        part_type = (image.content_type or "").split(";", 1)[0].strip().lower()
        if part_type not in _GENERIC_TYPES and format_for_media_type(part_type) is None:
            raise unsupported(f"the image part is {part_type}")
        data = await image.read()
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    finally:
        await form.close()
    return data, fields


def watch_disconnect(request: Request) -> asyncio.Task[None]:
    """A task that completes when the client disconnects. Start it only once the body has been
    read: from then on the only message the server can deliver is the disconnect."""

    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return asyncio.create_task(wait(), name="abpn-disconnect-watch")
