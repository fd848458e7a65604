"""The Braze REST API key, from Secrets Manager.

Read through Powertools parameters, cached for BRAZE_API_KEY_MAX_AGE_SECONDS, by one caller at a
time: the sender's Braze threads all want the key at once on a cold start, and without the lock each
of them read the secret (one GetSecretValue each, ~4 ms of CPU apiece). A 401 from Braze
re-reads it once (the key may have been rotated); every call that saw the old key fail shares
that one re-read. The key is only ever put in the Authorization header, never logged.
"""

from __future__ import annotations

import functools
import threading

from aws_lambda_powertools.utilities import parameters

from braze_forwarder import aws


class ApiKey:
    """The Braze REST key, read through Powertools parameters (cached with a max age)."""

    def __init__(self, secret_arn: str, max_age_seconds: int) -> None:
        self._secret_arn = secret_arn
        self._max_age_seconds = max_age_seconds
        self._lock = threading.Lock()
        self.generation = 0

    def value(self) -> tuple[str, int]:
        with self._lock:  # a cache hit is a dict lookup; a miss is read once, whoever else waits
            aws.share_session_with_powertools()
            key = parameters.get_secret(self._secret_arn, max_age=self._max_age_seconds)
            return str(key).strip(), self.generation

    def refresh(self, seen_generation: int) -> None:
        """Re-read the secret once per generation, however many calls saw the old key fail."""
        with self._lock:
            if self.generation == seen_generation:
                parameters.get_secret(self._secret_arn, max_age=self._max_age_seconds, force_fetch=True)
                self.generation += 1


@functools.cache
def api_key_for(secret_arn: str, max_age_seconds: int) -> ApiKey:
    """One key holder per secret in an execution environment, so every caller shares one re-read."""
    return ApiKey(secret_arn, max_age_seconds)


def reset() -> None:
    """Forget the key holders and the pooled Braze clients (tests switch endpoints and secrets)."""
    from braze_forwarder.braze.client import client_for

    api_key_for.cache_clear()
    client_for.cache_clear()
