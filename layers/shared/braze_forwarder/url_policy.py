"""Which URLs this deployment accepts: the callback base URL the export starter gives Braze, and the
download url Braze may answer with (checked by the callback and again by the copier).

A base module below `config` (which validates EXPORT_CALLBACK_BASE_URL and EXPORT_URL_ALLOWED_HOSTS
with it) and the exports feature (exports/urls.py, which downloads what it allows). Pure checks on
the text of a URL: no name resolution and no HTTP library, so importing it costs a cold start
nothing. See exports/urls.py for why a download url is untrusted input.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

DEFAULT_ALLOWED_HOSTS = (
    "s3.amazonaws.com",
    "*.s3.amazonaws.com",
    "s3.*.amazonaws.com",
    "*.s3.*.amazonaws.com",
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_LABEL = re.compile(r"\*|[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_URL_CHARS = 8192  # presigned URLs with session tokens run to ~2 KB


class UrlNotAllowed(ValueError):
    """A URL this deployment will not fetch; the message says why, without the URL's secrets."""


def check_host_pattern(pattern: str) -> str:
    """A lower-cased allow-list entry, or ValueError: DNS labels or `*`, two literal labels at least."""
    value = pattern.strip().lower().rstrip(".")
    labels = value.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or sum(label != "*" for label in labels) < 2:
        raise ValueError(
            f"{pattern!r} is not a host pattern: use host names such as s3.amazonaws.com or "
            "*.s3.amazonaws.com, where * stands for one label; IP addresses are not accepted"
        )
    if _is_ip(value):
        raise ValueError(f"{pattern!r}: IP addresses are not accepted in the allow-list")
    return value


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    labels = host.lower().rstrip(".").split(".")
    for pattern in patterns:
        expected = pattern.split(".")
        if len(expected) == len(labels) and all(p in ("*", label) for p, label in zip(expected, labels, strict=True)):
            return True
    return False


def check_download_url(url: object, allowed_hosts: Iterable[str], *, allow_loopback: bool) -> SplitResult:
    """The parsed url if this deployment may fetch it; UrlNotAllowed (naming the host only) if not."""
    if not isinstance(url, str) or not url or len(url) > _MAX_URL_CHARS:
        raise UrlNotAllowed("the url must be a string of at most 8,192 characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise UrlNotAllowed("the url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlNotAllowed("the url is not a valid URL") from None
    host = (parts.hostname or "").lower()
    if not host:
        raise UrlNotAllowed("the url has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowed(f"the url for {host} carries credentials")
    if host in LOOPBACK_HOSTS or _is_loopback_ip(host):
        if allow_loopback and parts.scheme in ("http", "https"):
            return parts
        raise UrlNotAllowed(f"loopback host {host} is not allowed (EXPORT_URL_ALLOW_LOOPBACK is for local runs only)")
    if parts.scheme != "https":
        raise UrlNotAllowed(f"the url for {host} is not https")
    if port not in (None, 443):
        raise UrlNotAllowed(f"the url for {host} uses port {port}; only 443 is allowed")
    if _is_ip(host):
        raise UrlNotAllowed(f"the url's host {host} is an IP address; only allow-listed host names are fetched")
    if not host_matches(host, allowed_hosts):
        raise UrlNotAllowed(f"host {host} is not in the allow-list (EXPORT_URL_ALLOWED_HOSTS)")
    return parts


def check_callback_base_url(url: str) -> str:
    """The API's base URL the starter puts in callback_endpoint: https, or http on loopback."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    plain = not parts.query and not parts.fragment and parts.username is None
    if plain and host and parts.scheme == "https":
        return url.strip().rstrip("/")
    if plain and parts.scheme == "http" and (host in LOOPBACK_HOSTS or _is_loopback_ip(host)):
        return url.strip().rstrip("/")
    raise ValueError(
        "must be the ingest API's https base URL (the stack's ApiUrl output), or http://127.0.0.1:<port> locally"
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(url: object) -> str:
    """Only the host of a url, for logs and reasons: presigned URLs carry credentials in the query."""
    try:
        return (urlsplit(url).hostname or "?") if isinstance(url, str) else "?"
    except ValueError:
        return "?"
