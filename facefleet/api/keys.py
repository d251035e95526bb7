"""API keys: created by an admin command, stored hashed in the archive database, checked on
every request (a revoked key stops working at once: nothing is cached). In the API the check
runs on a connection of its pool (`FACEFLEET_API_DB_POOL_SIZE`): opening one per request
cost more than the query."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from facefleet.archive.store import ArchiveStore
from facefleet.core.errors import InputError

Scope = Literal["read", "submit", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "submit", "admin")
PREFIX = "ffk_"
_TOKEN = re.compile(r"^ffk_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-]{0,63}$")


class ApiKey(BaseModel):
    """What the database keeps of a key: never its secret."""

    key_id: str
    name: str
    scopes: list[Scope]
    callback_url: str | None = Field(
        default=None, description="Default callback URL of the jobs submitted with this key"
    )
    created: datetime
    revoked: datetime | None = None
    last_used: datetime | None = None

    def allows(self, scope: Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class NewKey(BaseModel):
    key: ApiKey
    token: str = Field(description="The key itself: shown once, stored nowhere")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = _TOKEN.match(token.strip())
    return (match.group(1), match.group(2)) if match else None


class KeyStore:
    """The api_keys table."""

    def __init__(self, archive: ArchiveStore) -> None:
        self.archive = archive

    def create(self, name: str, scopes: list[Scope], callback_url: str | None = None) -> NewKey:
        if not _NAME.match(name):
            raise InputError(
                f"invalid key name {name!r} (letters, digits, space . _ -; at most 64)"
            )
        wanted = sorted(set(scopes), key=SCOPES.index)
        if not wanted:
            raise InputError("a key needs at least one scope (read, submit, admin)")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self.archive.transaction(vectors=False) as cur:
            cur.execute(
                "INSERT INTO api_keys (key_id, name, secret_hash, scopes, callback_url) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING created",
                (key_id, name, _digest(secret), wanted, callback_url),
            )
            (created,) = cur.fetchone()
        key = ApiKey(
            key_id=key_id, name=name, scopes=wanted, callback_url=callback_url, created=created
        )
        return NewKey(key=key, token=f"{PREFIX}{key_id}_{secret}")

    def list(self) -> list[ApiKey]:
        with self.archive.transaction(vectors=False) as cur:
            cur.execute(
                "SELECT key_id, name, scopes, callback_url, created, revoked, last_used "
                "FROM api_keys ORDER BY created"
            )
            rows = cur.fetchall()
        return [_key(row) for row in rows]

    def get(self, key_id: str) -> ApiKey | None:
        with self.archive.transaction(vectors=False) as cur:
            cur.execute(
                "SELECT key_id, name, scopes, callback_url, created, revoked, last_used "
                "FROM api_keys WHERE key_id = %s",
                (key_id,),
            )
            row = cur.fetchone()
        return _key(row) if row else None

    def revoke(self, key_id: str) -> ApiKey:
        with self.archive.transaction(vectors=False) as cur:
            cur.execute(
                "UPDATE api_keys SET revoked = coalesce(revoked, now()) WHERE key_id = %s "
                "RETURNING key_id, name, scopes, callback_url, created, revoked, last_used",
                (key_id,),
            )
            row = cur.fetchone()
        if row is None:
            raise InputError(f"no API key {key_id!r}")
        return _key(row)

    def authenticate(self, token: str) -> ApiKey | None:
        """The live key this token is, or None (malformed, unknown, wrong secret, revoked).
        One indexed query; last_used is updated at most once a minute per key."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        with self.archive.transaction(vectors=False) as cur:
            cur.execute(
                "SELECT key_id, name, scopes, callback_url, created, revoked, last_used, "
                "secret_hash FROM api_keys WHERE key_id = %s",
                (key_id,),
            )
            row = cur.fetchone()
            if row is None or row[5] is not None:
                return None
            if not hmac.compare_digest(row[7], _digest(secret)):
                return None
            cur.execute(
                "UPDATE api_keys SET last_used = now() WHERE key_id = %s AND "
                "(last_used IS NULL OR last_used < now() - interval '1 minute')",
                (key_id,),
            )
        return _key(row[:7])

    def is_live(self, key_id: str) -> ApiKey | None:
        """The key of a review session, if it still exists and is not revoked."""
        key = self.get(key_id)
        return key if key is not None and key.revoked is None else None


def _key(row: tuple) -> ApiKey:  # type: ignore[type-arg]
    key_id, name, scopes, callback_url, created, revoked, last_used = row
    return ApiKey(
        key_id=key_id,
        name=name,
        scopes=list(scopes),
        callback_url=callback_url,
        created=created,
        revoked=revoked,
        last_used=last_used,
    )
