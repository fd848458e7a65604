"""Which Braze REST endpoints the sender may call.

Braze's documented instance hosts only (BRAZE_API.md §9), over HTTPS; plus plain-HTTP loopback for
the tests and the local stack's sandbox. Anything else is refused at cold start: a typo in the
endpoint would otherwise send users' data, with the REST key, to a stranger.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_INSTANCE_HOST = re.compile(
    r"rest\.(?:iad-0[1-8]\.braze\.com|fra-0[12]\.braze\.eu"
    r"|(?:us-10|au-01|id-01|jp-01|kr-01)\.braze\.com)"
)
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_rest_endpoint(url: str) -> str:
    """Return the endpoint without a trailing slash, or raise ValueError saying what is accepted."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    well_formed = not parts.query and not parts.fragment and parts.path in ("", "/") and not parts.username
    if well_formed and parts.scheme == "https" and _INSTANCE_HOST.fullmatch(host) and parts.port is None:
        return f"https://{host}"
    if well_formed and parts.scheme == "http" and host in _LOOPBACK_HOSTS:
        return url.strip().rstrip("/")
    raise ValueError(
        "must be your Braze instance's REST endpoint, e.g. https://rest.iad-01.braze.com or "
        "https://rest.fra-01.braze.eu (Settings › APIs and Identifiers shows yours), or an "
        "http://127.0.0.1:<port> sandbox"
    )
