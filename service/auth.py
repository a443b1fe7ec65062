"""Optional API keys (ABPN_API_KEYS): when set, every /v1/* request needs
`Authorization: Bearer <key>` and is answered 401 otherwise, before its body is read. Health,
readiness, metrics and the documentation stay open for probes and scrapers.

Keys are kept only as SHA-256 digests and compared in constant time, each against every key,
so neither the timing nor a log line tells anything about them."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError, error_response
from service.metrics import Metrics

PROTECTED_PREFIX = "/v1/"
SECURITY_SCHEME = "apiKey"
"""The bearer key's name in the OpenAPI schema's `components.securitySchemes`."""
MIN_KEY_LENGTH = 16
"""Shorter keys are refused at start-up: a guessable key is no protection."""


class ApiKeyError(ValueError):
    """ABPN_API_KEYS cannot be used; the message never contains a key."""


def load_keys(setting: SecretStr | None) -> frozenset[bytes] | None:
    """The SHA-256 digests of the configured keys, or None when keys are off. A value that
    starts with "/" is a file (one key per line or comma-separated; # starts a comment)."""
    if setting is None:
        return None
    value = setting.get_secret_value().strip()
    if value.startswith("/"):
        try:
            text = Path(value).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ApiKeyError(f"ABPN_API_KEYS: cannot read the key file {value}: {exc}") from None
        lines = (line.split("#", 1)[0] for line in text.splitlines())
        value = ",".join(lines)
    keys = [key.strip() for key in value.split(",") if key.strip()]
    if not keys:
        raise ApiKeyError("ABPN_API_KEYS is set but holds no key")
    for i, key in enumerate(keys, 1):
        if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
            raise ApiKeyError(
                f"ABPN_API_KEYS: key {i} is shorter than {MIN_KEY_LENGTH} characters or "
                "contains white space"
            )
    return frozenset(_digest(key.encode()) for key in keys)


def _digest(key: bytes) -> bytes:
    # Comparing digests keeps the comparison's time independent of the keys' lengths too.
    return hashlib.sha256(key).digest()


def _bearer(headers: Headers) -> bytes | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode("utf-8", "surrogateescape")


def key_matches(token: bytes | None, digests: frozenset[bytes]) -> bool:
    """Whether `token` is one of the keys, compared against all of them in constant time."""
    given = _digest(token or b"")
    matched = False
    for digest in digests:
        matched |= hmac.compare_digest(given, digest)
    return matched and token is not None


class ApiKeyMiddleware:
    """Refuses /v1/* without a valid bearer key (pure ASGI: nothing is buffered)."""

    def __init__(self, app: ASGIApp, digests: frozenset[bytes], metrics: Metrics) -> None:
        self.app = app
        self.digests = digests
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 401."""
        if (
            scope["type"] == "http"
            and _protected(scope["path"])
            and not key_matches(_bearer(Headers(scope=scope)), self.digests)
        ):
            self.metrics.rejected.labels("unauthorized").inc()
            error = ServiceError(
                401,
                "unauthorized",
                "this service needs an API key: send Authorization: Bearer <key>",
                {"WWW-Authenticate": "Bearer"},
            )
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIX) or path == PROTECTED_PREFIX.rstrip("/")


def document(app: FastAPI) -> None:
    """Declare the bearer key in the app's OpenAPI schema: a security scheme, required by every
    /v1/* operation, so that Swagger UI shows its Authorize button and clients generated from
    the schema send the key. Only for an app that asks for keys."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # FastAPI caches it as app.openapi_schema: amended once, here
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[SECURITY_SCHEME] = {
                "type": "http",
                "scheme": "bearer",
                "description": "A key of ABPN_API_KEYS: `Authorization: Bearer <key>`.",
            }
            for path, operations in schema["paths"].items():
                if _protected(path):
                    for operation in operations.values():
                        operation["security"] = [{SECURITY_SCHEME: []}]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
