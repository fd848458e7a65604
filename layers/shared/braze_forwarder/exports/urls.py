"""Which addresses the export functions may talk to, and the one download they make.

Two URLs cross this module:

* the callback base URL the starter gives Braze (our own API): https, or plain-HTTP loopback for
  the local stack;
* the download `url` Braze answers with when the workspace has no own storage (BRAZE_API.md §7).
  It arrives in a callback, so it is untrusted input: were the copier to fetch whatever it is
  given, the callback route would be a way to make a function inside the AWS account request
  arbitrary addresses (the instance metadata endpoint, internal services). So a download url must
  be https, on a host of the allow-list, without credentials or an unusual port; every address its
  host resolves to must be a public one; redirects are not followed; and the download stops at a
  size cap and a time cap.

The default allow-list is Amazon S3's hosts. Braze does not document where its download url
points; what it serves are presigned S3 links [inf], so S3 hosts are the narrowest list that works
out of the box. EXPORT_URL_ALLOWED_HOSTS replaces it. A pattern is a host name whose labels are
literal or `*`, and `*` stands for exactly one label: `*.s3.amazonaws.com` matches
`bucket.s3.amazonaws.com`, not `a.b.s3.amazonaws.com` nor `s3.amazonaws.com.evil.example`.

Loopback (the local Braze sandbox serves its download over http://127.0.0.1) is refused unless
EXPORT_URL_ALLOW_LOOPBACK is set, which only the tests and the local stack do.

[inf] The address check runs before the request, and the HTTP library resolves the name again
when it connects; a DNS answer that changes in between (rebinding) is not caught. The allow-list
is the main guard; the address check is a second one.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Iterable
from typing import BinaryIO
from urllib.parse import SplitResult, urlsplit

import requests

DEFAULT_ALLOWED_HOSTS = (
    "s3.amazonaws.com",
    "*.s3.amazonaws.com",
    "s3.*.amazonaws.com",
    "*.s3.*.amazonaws.com",
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_LABEL = re.compile(r"\*|[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_URL_CHARS = 8192  # presigned URLs with session tokens run to ~2 KB
_CHUNK_BYTES = 1024 * 1024
_CONNECT_TIMEOUT_SECONDS = 5.0


class UrlNotAllowed(ValueError):
    """A URL this deployment will not fetch; the message says why, without the URL's secrets."""


class DownloadFailed(Exception):
    """The download did not complete. `permanent`: trying again cannot help (too big, refused, gone)."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


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


def download(
    url: str,
    destination: BinaryIO,
    *,
    allowed_hosts: Iterable[str],
    allow_loopback: bool,
    max_bytes: int,
    timeout_seconds: float,
) -> int:
    """Stream the url into `destination` (a file); return the bytes written."""
    parts = check_download_url(url, allowed_hosts, allow_loopback=allow_loopback)
    host = (parts.hostname or "").lower()
    _check_addresses(host, parts.port or (443 if parts.scheme == "https" else 80), allow_loopback)
    deadline = time.monotonic() + timeout_seconds
    with requests.Session() as session:
        # No proxies, .netrc credentials or CA overrides from the environment: nothing but this url.
        session.trust_env = False
        try:
            response = session.get(
                url,
                stream=True,
                allow_redirects=False,
                timeout=(_CONNECT_TIMEOUT_SECONDS, min(60.0, timeout_seconds)),
            )
        except requests.RequestException as exc:
            raise DownloadFailed(f"GET {host} failed: {type(exc).__name__}", permanent=False) from None
        with response:
            _check_status(response, host)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadFailed(f"{host} announces {declared} bytes, over the cap of {max_bytes}", permanent=True)
            written = 0
            try:
                for chunk in response.iter_content(_CHUNK_BYTES):
                    written += len(chunk)
                    if written > max_bytes:
                        raise DownloadFailed(f"the download from {host} exceeds {max_bytes} bytes", permanent=True)
                    if time.monotonic() > deadline:
                        raise DownloadFailed(
                            f"the download from {host} took longer than {timeout_seconds:g} s", permanent=False
                        )
                    destination.write(chunk)
            except requests.RequestException as exc:
                raise DownloadFailed(
                    f"the download from {host} broke off: {type(exc).__name__}", permanent=False
                ) from None
    return written


def _check_status(response: requests.Response, host: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if 300 <= status < 400:
        # A redirect could lead anywhere; the allow-list is only worth something if it is the last word.
        raise DownloadFailed(f"{host} answered a redirect ({status}), which is not followed", permanent=True)
    # 404: Braze's url "becomes valid only once the export is ready" (§7) — worth another try.
    # 429 and 5xx: the host is busy. 401/403/410: expired ("valid for a few hours") or refused.
    permanent = status in (400, 401, 403, 405, 410)
    raise DownloadFailed(f"{host} answered HTTP {status}", permanent=permanent)


def _check_addresses(host: str, port: int, allow_loopback: bool) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise DownloadFailed(f"cannot resolve {host}", permanent=False) from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address.is_global or (allow_loopback and address.is_loopback):
            continue
        raise DownloadFailed(f"{host} resolves to a non-public address; not fetched", permanent=True)


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
