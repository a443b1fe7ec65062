"""POST /v1/retouch: validate, read the image, then decode -> batch -> encode."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from model.photo import MEDIA_TYPES, check_encodable
from model.result import MAX_STRENGTH, MAX_WHITENING
from service import errors
from service.batcher import ClientGone, DeadlineExceeded
from service.runtime import RuntimeDep
from service.upload import (
    UploadClock,
    UploadLimits,
    body_cost,
    check_headers,
    declared_length,
    read_upload,
    watch_disconnect,
)

router = APIRouter(tags=["retouch"])

_FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff"}


class RetouchParams(BaseModel):
    """Parameters, from the query string or from multipart form fields (form wins)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    strength: float = Field(
        1.0,
        ge=0.0,
        le=MAX_STRENGTH,
        description="0 returns the input unchanged, 1 the model's retouch, up to 1.5 more.",
    )
    whitening: float = Field(
        0.0,
        ge=0.0,
        le=MAX_WHITENING,
        description="Lightens the skin (soft light on the skin mask); 0, the default, is off.",
    )
    format: Literal["jpeg", "png", "webp", "tiff"] | None = Field(
        None, description="Output format; default: the input's."
    )
    quality: int | None = Field(
        None, ge=1, le=100, description="JPEG/WebP quality (default 90); PNG/TIFF are lossless."
    )
    output: Literal["image", "mask"] = Field(
        "image", description="`image`: the retouched photo; `mask`: the greyscale retouch mask."
    )

    @field_validator("format", mode="before")
    @classmethod
    def _normalise_format(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            return _FORMAT_ALIASES.get(value, value)
        return value


def _merge_form(params: RetouchParams, fields: dict[str, str]) -> RetouchParams:
    given = {k: v for k, v in fields.items() if k in RetouchParams.model_fields}
    if not given:
        return params
    try:
        return RetouchParams.model_validate({**params.model_dump(exclude_unset=True), **given})
    except ValidationError as exc:
        located = [{**e, "loc": ("form", *e["loc"])} for e in exc.errors()]
        raise errors.ServiceError(
            422, "invalid_parameter", errors.validation_message(located)
        ) from exc


def _server_timing(**seconds: float) -> str:
    return ", ".join(f"{name};dur={value * 1000:.1f}" for name, value in seconds.items())


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The photo as the raw body, or as the multipart form field `image` "
        "(parameters may then be form fields too). At most ABPN_MAX_BODY_BYTES bytes and "
        "ABPN_MAX_PIXELS pixels.",
        "content": {
            **{media: _BINARY for media in MEDIA_TYPES.values()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "strength": {"type": "number", "minimum": 0, "maximum": MAX_STRENGTH},
                        "whitening": {"type": "number", "minimum": 0, "maximum": MAX_WHITENING},
                        "format": {"type": "string", "enum": list(MEDIA_TYPES)},
                        "quality": {"type": "integer", "minimum": 1, "maximum": 100},
                        "output": {"type": "string", "enum": ["image", "mask"]},
                    },
                }
            },
        },
    }
}
_OK = {
    200: {
        "description": "The retouched photo (or mask): EXIF orientation applied, ICC profile, "
        "EXIF and alpha kept where the format allows.",
        "content": {media: _BINARY for media in MEDIA_TYPES.values()},
        "headers": {
            "X-Request-ID": {"description": "The client's, echoed, or a new one."},
            "Server-Timing": {"description": "queue, decode, faces, model and encode, in ms."},
            "X-Faces": {
                "description": "Faces found and retouched; 0: the photo is returned unchanged."
            },
            "X-Faces-Skipped": {
                "description": "Faces found past ABPN_MAX_FACES and left unchanged (the "
                "largest are retouched); always sent, 0 when none."
            },
        },
    }
}


@router.post(
    "/v1/retouch",
    summary="Retouch a portrait",
    response_class=Response,
    responses={**_OK, **errors.responses(400, 401, 408, 413, 415, 422, 500, 503, 504)},
    openapi_extra=_REQUEST_BODY,
)
async def retouch(
    request: Request,
    runtime: RuntimeDep,
    params: Annotated[RetouchParams, Query()],
    # Typed `float` with a None default: optional, and without `null` in the schema (a header
    # has no null; `float | None` advertised one that was then refused).
    x_request_timeout: Annotated[
        float,  # noqa: RUF013
        Header(gt=0, description="Seconds; lowers the deadline (ABPN_REQUEST_TIMEOUT_S)."),
    ] = None,  # type: ignore[assignment]
) -> Response:
    """Retouch one photo. The request waits in a bounded queue for a model replica and is
    batched with others; it is refused at once (503) when the queue is full, when its body or
    photo would take the memory in flight past the budget (read from the headers, before the
    body is read or the photo decoded), or when the work queued ahead would outlast its
    deadline; it is answered 504 if its deadline passes while it uploads, decodes or waits,
    and dropped, never computed, if its client goes away while it is queued. An upload that
    stalls is answered 408, and an output format that cannot hold the image 422, both before
    the model runs."""
    settings = runtime.settings
    refusal = runtime.lifecycle.readiness_error()
    if refusal is not None:
        raise refusal
    with runtime.lifecycle.track():
        kind = check_headers(request, settings.max_body_bytes)
        timeout = min(x_request_timeout or settings.request_timeout_s, settings.request_timeout_s)
        deadline = request.state.arrived_at + timeout
        clock = UploadClock(
            request.state.arrived_at, settings.read_timeout_s, settings.min_upload_rate
        )
        # The lease covers the photo until it is encoded. The queue place is given back as
        # soon as a replica takes the request (Batcher._start), before the encode.
        with runtime.memory.lease() as lease, runtime.batcher.reserve() as slot:
            prepaid = body_cost(kind, declared_length(request) or 0)
            lease.grow(prepaid, "the upload")
            limits = UploadLimits(settings.max_body_bytes, clock, deadline, lease, prepaid)
            upload = await read_upload(request, kind, limits, runtime.lifecycle.uploads_cut)
            params = _merge_form(params, upload.fields)
            disconnected = watch_disconnect(request)
            try:
                source, decode_s = await runtime.lifecycle.unless_cut(
                    runtime.codecs.decode(upload.data, settings.max_pixels, lease, deadline)
                )
                check_encodable(source, params.format or source.format, params.output == "mask")
                if disconnected.done():
                    raise ClientGone("decode")
                parse, faces_s = None, 0.0
                if runtime.faces is not None:
                    parse, faces_s = await runtime.faces.parse(source.rgb, deadline, disconnected)
                    if disconnected.done():
                        raise ClientGone("faces")
                    if time.monotonic() > deadline:
                        raise DeadlineExceeded("the deadline passed while finding faces")
                item = slot.submit(
                    source.rgb,
                    params.strength,
                    params.output == "mask",
                    deadline,
                    params.whitening,
                    parse,
                )
                result = await runtime.batcher.wait(item, disconnected)
            finally:
                disconnected.cancel()
            body, media_type, encode_s = await runtime.lifecycle.unless_cut(
                runtime.codecs.encode(
                    source,
                    result,
                    fmt=params.format,
                    quality=params.quality,
                    mask=params.output == "mask",
                    original=upload.data,  # what goes back when the model changed nothing
                )
            )
    timing = _server_timing(
        queue=item.queue_seconds,
        decode=decode_s,
        faces=faces_s,
        model=item.model_seconds,
        encode=encode_s,
    )
    # A personal photo: no cache on the way may keep it.
    headers = {
        "Server-Timing": timing,
        "X-Faces": str(result.faces),
        "X-Faces-Skipped": str(result.faces_skipped),
        "Cache-Control": "no-store",
    }
    return Response(body, media_type=media_type, headers=headers)
