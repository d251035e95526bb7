"""Who is calling: an API key in `Authorization: Bearer <key>`, or the review page's session
cookie (signed, holding the key's id and a CSRF token that every unsafe request must send
back in `X-CSRF-Token`). Both are checked against the database on every request."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import BaseModel

from facefleet.api.keys import ApiKey, KeyStore, Scope

SESSION_COOKIE = "facefleet_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_MAX_AGE_S = 12 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Principal(BaseModel):
    key: ApiKey
    via: Literal["key", "session"]
    csrf: str | None = None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.session_secret, salt="facefleet-review")


def _keys(request: Request) -> KeyStore:
    return request.app.state.keys


def read_session(request: Request) -> tuple[str, str] | None:
    """(key id, CSRF token) of a valid session cookie, else None."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        data = _serializer(request).loads(cookie, max_age=SESSION_MAX_AGE_S)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not {"k", "c"} <= data.keys():
        return None
    return str(data["k"]), str(data["c"])


def principal(request: Request) -> Principal:
    """The caller, or 401. A sync dependency on purpose: it queries the database, so
    FastAPI runs it in its thread pool rather than on the event loop."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("expected 'Authorization: Bearer <API key>'")
        key = _keys(request).authenticate(token)
        if key is None:
            raise _unauthorized("invalid or revoked API key")
        return Principal(key=key, via="key")
    session = read_session(request)
    if session is not None:
        key_id, csrf = session
        key = _keys(request).is_live(key_id)
        if key is None:
            raise _unauthorized("the session's API key was revoked; log in again")
        if request.method not in _SAFE_METHODS and not secrets.compare_digest(
            request.headers.get(CSRF_HEADER, ""), csrf
        ):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
        return Principal(key=key, via="session", csrf=csrf)
    raise _unauthorized("no API key: send 'Authorization: Bearer <API key>'")


def require(scope: Scope) -> Callable[[Request], Principal]:
    """A dependency: the caller, if its key has `scope` (admin has every scope), else 403."""

    def check(request: Request) -> Principal:
        caller = principal(request)
        if not caller.key.allows(scope):
            raise HTTPException(403, f"this API key lacks the {scope!r} scope")
        return caller

    check.__name__ = f"require_{scope}"
    return check


def start_session(request: Request, response: Response, key: ApiKey) -> str:
    """Log the browser in as `key`: sets the cookie, returns the session's CSRF token."""
    csrf = secrets.token_urlsafe(24)
    value = _serializer(request).dumps({"k": key.key_id, "c": csrf})
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.app.state.https,
        path="/",
    )
    return csrf


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


# The caller with each scope, as route parameter types (`caller: Reader`).
Reader = Annotated[Principal, Depends(require("read"))]
Submitter = Annotated[Principal, Depends(require("submit"))]
Admin = Annotated[Principal, Depends(require("admin"))]
