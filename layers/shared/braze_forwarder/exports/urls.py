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

The checks on a URL's text live in url_policy.py, below config (which validates the settings with
them); this module adds the address check and the download, and names the policy for the exports.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

# The policy is a base module (config validates settings with it); the exports feature uses it from here.
from braze_forwarder.url_policy import (
    DEFAULT_ALLOWED_HOSTS,
    LOOPBACK_HOSTS,
    UrlNotAllowed,
    check_callback_base_url,
    check_download_url,
    check_host_pattern,
    host_matches,
    host_of,
)

__all__ = [
    "DEFAULT_ALLOWED_HOSTS",
    "LOOPBACK_HOSTS",
    "DownloadFailed",
    "UrlNotAllowed",
    "check_callback_base_url",
    "check_download_url",
    "check_host_pattern",
    "download",
    "host_matches",
    "host_of",
]

if TYPE_CHECKING:
    import requests

_CHUNK_BYTES = 1024 * 1024
_CONNECT_TIMEOUT_SECONDS = 5.0


class DownloadFailed(Exception):
    """The download did not complete. `permanent`: trying again cannot help (too big, refused, gone)."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


def download(
    url: str,
    destination: IO[bytes],
    *,
    allowed_hosts: Iterable[str],
    allow_loopback: bool,
    max_bytes: int,
    timeout_seconds: float,
) -> int:
    """Stream the url into `destination` (a file); return the bytes written."""
    # Imported here: only the copier downloads. The callback checks urls with this module and never
    # needs requests, whose import (with charset_normalizer and idna) was ~19 ms of its cold start.
    import requests

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
