"""Authentication of API clients by bearer key.

Keys are never stored: the ingest-keys secret holds the SHA-256 of each key with the client's name,

    {"clients": [{"name": "ios-backend", "key_sha256": "<64 hex chars>"}, ...]}

so rotating a key is: add the new hash, move the client over, remove the old hash — no downtime.
The presented key's hash is compared with every entry in constant time, and the answer to any
failure is the same 401, so a caller learns nothing about which part was wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from aws_lambda_powertools.utilities import parameters

from braze_forwarder import aws
from braze_forwarder.http_answers import RequestRejected
from braze_forwarder.observability import logger

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_KEY_CHARS = 512
# A key that is not in the cached secret forces a re-read at most this often: a client whose key
# was just added works within seconds, and bad keys cannot turn into a flood of Secrets Manager calls.
_REFRESH_ON_MISS_INTERVAL_SECONDS = 30.0


class IngestKeysSecretError(RuntimeError):
    """The ingest-keys secret is missing or not in the documented shape (a deployment error)."""


@dataclass(frozen=True, slots=True)
class ClientKey:
    name: str
    key_sha256: bytes


_last_refresh_on_miss = 0.0
# The last secret document read and its parsed entries: Powertools hands back the same cached
# document until max_age, and a secret with many clients is not worth parsing on every request.
_parsed: tuple[object, tuple[ClientKey, ...]] | None = None


def authenticate(authorization: str | None, secret_arn: str, max_age_seconds: int) -> str:
    """Return the name of the client whose key is presented, or raise a 401."""
    key = _bearer_key(authorization)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest().encode("ascii")
    name = _match(digest, _client_keys(secret_arn, max_age_seconds, force_fetch=False))
    if name is None and _may_refresh_on_miss():
        name = _match(digest, _client_keys(secret_arn, max_age_seconds, force_fetch=True))
    if name is None:
        raise _unauthorized()
    return name


def hash_key(key: str) -> str:
    """The value to store in the secret for a key (also: printf %s "$KEY" | sha256sum)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _bearer_key(authorization: str | None) -> str:
    scheme, _, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > _MAX_KEY_CHARS:
        raise _unauthorized()
    return key


def _match(digest: bytes, clients: tuple[ClientKey, ...]) -> str | None:
    # Compare against every entry, whatever matched, so timing does not reveal the position.
    found = None
    for client in clients:
        if hmac.compare_digest(digest, client.key_sha256):
            found = client.name
    return found


def _client_keys(secret_arn: str, max_age_seconds: int, force_fetch: bool) -> tuple[ClientKey, ...]:
    aws.share_session_with_powertools()
    try:
        document = parameters.get_secret(secret_arn, transform="json", max_age=max_age_seconds, force_fetch=force_fetch)
    except (parameters.exceptions.GetParameterError, parameters.exceptions.TransformParameterError) as exc:
        raise IngestKeysSecretError(f"cannot read the ingest-keys secret: {type(exc).__name__}") from exc
    global _parsed
    if _parsed is None or _parsed[0] is not document:
        _parsed = document, _parse(document)
    return _parsed[1]


def _parse(document: object) -> tuple[ClientKey, ...]:
    entries = document.get("clients") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise IngestKeysSecretError('the ingest-keys secret must be {"clients": [{"name": ..., "key_sha256": ...}]}')
    clients = []
    for position, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        key_sha256 = entry.get("key_sha256") if isinstance(entry, dict) else None
        if not (isinstance(name, str) and _CLIENT_NAME.fullmatch(name)):
            raise IngestKeysSecretError(f"clients[{position}].name must be 1-64 letters, digits, '.', '_' or '-'")
        if not (isinstance(key_sha256, str) and _HEX_SHA256.fullmatch(key_sha256)):
            raise IngestKeysSecretError(f"clients[{position}].key_sha256 must be 64 lower-case hex characters")
        clients.append(ClientKey(name, key_sha256.encode("ascii")))
    return tuple(clients)


def _may_refresh_on_miss() -> bool:
    global _last_refresh_on_miss
    now = time.monotonic()
    if now - _last_refresh_on_miss < _REFRESH_ON_MISS_INTERVAL_SECONDS:
        return False
    _last_refresh_on_miss = now
    logger.debug("unknown key, re-reading the ingest-keys secret")
    return True


def reset() -> None:
    """Forget refresh timing and the parsed secret (tests)."""
    global _last_refresh_on_miss, _parsed
    _last_refresh_on_miss = 0.0
    _parsed = None


def _unauthorized() -> RequestRejected:
    return RequestRejected(401, "unauthorized", "missing or invalid API key", {"WWW-Authenticate": "Bearer"})
