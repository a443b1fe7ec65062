"""Reading the uploaded image: a raw image body or a multipart form field `image`, under the
body limit (checked against Content-Length before reading, and counted while reading for
chunked uploads), plus watching for the client to go away."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from model.photo import format_for_media_type
from service.errors import ServiceError

_MULTIPART = "multipart/form-data"
# Part types that say nothing about the data: the bytes are sniffed instead.
_GENERIC_TYPES = {"", "application/octet-stream"}
_FORM_FIELDS_MAX = 16


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
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body_bytes:
        raise body_too_large(max_body_bytes)
    return kind


def body_too_large(limit: int) -> ServiceError:
    """The 413 for a body over `limit` bytes."""
    return ServiceError(413, "body_too_large", f"the request body is over {limit} bytes")


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's chunks, stopping with 413 as soon as more than `limit` bytes arrived."""
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise body_too_large(limit)
        yield chunk


async def read_upload(request: Request, kind: BodyKind, max_body_bytes: int) -> Upload:
    """Read the image under the body limit. Raises ServiceError (400, 413, 415, 422)."""
    if kind is BodyKind.RAW:
        data = b"".join([chunk async for chunk in _limited(request, max_body_bytes)])
        fields: dict[str, str] = {}
    else:
        data, fields = await _read_form(request, max_body_bytes)
    if not data:
        raise ServiceError(400, "invalid_image", "the image is empty")
    return Upload(data, fields)


async def _read_form(request: Request, max_body_bytes: int) -> tuple[bytes, dict[str, str]]:
    parser = MultiPartParser(
        request.headers,
        _limited(request, max_body_bytes),
        max_files=1,
        max_fields=_FORM_FIELDS_MAX,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ServiceError(400, "invalid_multipart", str(exc)) from exc
    try:
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
