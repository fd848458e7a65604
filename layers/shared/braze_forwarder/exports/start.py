"""ExportStarterFunction's logic: one job per scheduled run, one export request to Braze.

The schedule passes its run's time (`<aws.scheduler.scheduled-time>`, see template.yaml), and the
job id is made from it. EventBridge Scheduler and Lambda's asynchronous invocation both retry, so
the same run can arrive more than once; the job's conditional creation makes every arrival after
the first a no-op — unless the first one's start failed (or died mid-way), in which case the
arrival re-arms the job with a new token and tries again. A run without a scheduled time (a
manual `aws lambda invoke`) gets a fresh job id.

Braze's answers are handled as the sender handles them (braze.client): 429 waits what the headers
say, 5xx / timeouts back off and retry, 401 re-reads the key once, 400/403/404 are final. A start
that fails is never silent: the job gets status `start_failed` with the reason, the
ExportStartFailed metric counts it, and an error is logged. When trying again later could help
(Braze busy or down), the invocation also raises, so Lambda's asynchronous retries come back to it.

The callback token exists in clear only in the callback URL handed to Braze; the job stores its
SHA-256, and nothing here logs the URL.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.utilities import parameters

from braze_forwarder.braze import credentials
from braze_forwarder.braze.client import BrazeResponse, Verdict, client_for, retry_delay_seconds
from braze_forwarder.braze.credentials import api_key_for
from braze_forwarder.config import ExportStarterSettings, settings
from braze_forwarder.exports import jobs
from braze_forwarder.observability import MetricUnit, logger, metrics

GCG_EXPORT_PATH = "/users/export/global_control_group"
# §7: object_prefix is "<uuid>-<unix time>"; it becomes part of S3 prefixes, so only plain characters.
_OBJECT_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
# A start still `requested` after this long died with its invocation (Lambda's ceiling is 15 min).
_STALE_START = timedelta(minutes=15)


class ExportStartError(Exception):
    """The start failed in a way a later attempt may not (Braze busy or down); Lambda retries it."""


class _Failure(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class ExportAnswer:
    object_prefix: str
    url: str | None


def start_export(event: Mapping[str, Any] | None, remaining_seconds: Callable[[], float]) -> dict[str, Any]:
    """Start this run's export unless it was started already; return the job's id and status."""
    config = settings(ExportStarterSettings)
    deadline = time.monotonic() + remaining_seconds() - config.time_reserve_seconds
    job_id, export_date = job_identity(event)
    logger.append_keys(job_id=job_id)
    table = config.export_jobs_table
    token, token_hash = jobs.new_token()
    created = jobs.create(
        table,
        job_id,
        token_hash,
        fields=config.export_fields,
        output_format=config.export_output_format,
        export_date=export_date,
        ttl_seconds=config.export_job_ttl_days * 86400,
    )
    if not created:
        stale_before = (datetime.now(UTC) - _STALE_START).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if not jobs.rearm(table, job_id, token_hash, stale_before=stale_before):
            existing = jobs.get(table, job_id)
            status = existing.status if existing else "unknown"
            logger.info("this run's export was started already; nothing to do", extra={"status": status})
            return {"job_id": job_id, "status": status, "started": False}
        logger.warning("trying again to start this run's export")
    callback_endpoint = f"{config.export_callback_base_url}/exports/{job_id}/callback?token={token}"
    try:
        answer = request_export(config, callback_endpoint, deadline)
    except _Failure as failure:
        return _start_failed(table, job_id, token_hash, failure)
    except Exception as exc:
        # Not Braze's answer but our own failure: recorded all the same, so the job is not left
        # `requested` (which a retry within 15 minutes would take for a start still running).
        _start_failed(table, job_id, token_hash, _Failure(f"unexpected error: {type(exc).__name__}", retryable=False))
        raise
    if not jobs.mark_started(table, job_id, token_hash, answer.object_prefix, answer.url):
        # Another invocation re-armed the job meanwhile; its own token is the one that counts now.
        logger.warning("the job was re-armed while this export was being requested; this answer is not recorded")
        return {"job_id": job_id, "status": "superseded", "started": False}
    metrics.add_metric(name="ExportsStarted", unit=MetricUnit.Count, value=1)
    delivery = "url" if answer.url else "bucket"
    logger.info(
        "global control group export started", extra={"object_prefix": answer.object_prefix, "delivery": delivery}
    )
    return {"job_id": job_id, "status": jobs.STARTED, "object_prefix": answer.object_prefix, "started": True}


def _start_failed(table: str, job_id: str, token_hash: str, failure: _Failure) -> dict[str, Any]:
    jobs.mark_start_failed(table, job_id, token_hash, failure.reason)
    metrics.add_metric(name="ExportStartFailed", unit=MetricUnit.Count, value=1)
    logger.error(
        "the global control group export could not be started",
        extra={"reason": failure.reason, "will_retry": failure.retryable},
    )
    if failure.retryable:
        raise ExportStartError(failure.reason) from None
    return {"job_id": job_id, "status": jobs.START_FAILED, "reason": failure.reason, "started": False}


def job_identity(event: Mapping[str, Any] | None) -> tuple[str, str]:
    """(job id, export date) for this invocation: from the schedule's run time when there is one."""
    scheduled = event.get("scheduled_time") if isinstance(event, Mapping) else None
    if scheduled is None:
        now = datetime.now(UTC)
        return f"gcg-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}", now.date().isoformat()
    try:
        moment = datetime.fromisoformat(str(scheduled).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise ValueError(
            f"scheduled_time must be an ISO 8601 time such as 2026-11-22T06:00:00Z, not {str(scheduled)[:40]!r}"
        ) from None
    return f"gcg-{moment:%Y%m%dT%H%M%SZ}", moment.date().isoformat()


def request_export(config: ExportStarterSettings, callback_endpoint: str, deadline: float) -> ExportAnswer:
    """POST /users/export/global_control_group until Braze accepts, refuses for good, or time runs out."""
    client = client_for(
        config.braze_rest_endpoint, 1, config.braze_connect_timeout_seconds, config.braze_read_timeout_seconds
    )
    api_key = api_key_for(config.braze_api_key_secret_arn, config.braze_api_key_max_age_seconds)
    body = {
        "callback_endpoint": callback_endpoint,
        "fields_to_export": list(config.export_fields),
        "output_format": config.export_output_format,
    }
    attempt_seconds = config.braze_connect_timeout_seconds + config.braze_read_timeout_seconds
    attempt = 0
    refreshed_key = False
    while True:
        if time.monotonic() + attempt_seconds > deadline:
            raise _Failure("no time left in this invocation for another call to Braze", retryable=True)
        try:
            key, generation = api_key.value()
        except parameters.exceptions.GetParameterError as exc:
            raise _Failure(f"cannot read the Braze REST key secret ({type(exc).__name__})", retryable=True) from None
        response = client.post(GCG_EXPORT_PATH, body, key)
        verdict = response.verdict
        if verdict is Verdict.SUCCESS:
            return _answer(response)
        if verdict is Verdict.UNAUTHORIZED and not refreshed_key:
            refreshed_key = True
            api_key.refresh(generation)
            continue
        if verdict in (Verdict.UNAUTHORIZED, Verdict.MISCONFIGURED, Verdict.SPLIT):
            raise _Failure(_refusal(response, config), retryable=False)
        attempt += 1
        if attempt >= config.braze_max_attempts:
            raise _Failure(f"Braze answered {response.message} {attempt} times in a row", retryable=True)
        pause = retry_delay_seconds(response, attempt)
        if time.monotonic() + pause + attempt_seconds > deadline:
            raise _Failure(
                f"Braze answered {response.message}; waiting {pause:.1f} s more would overrun the invocation",
                retryable=True,
            )
        logger.info(
            "Braze is busy; waiting before the next attempt",
            extra={"status": response.status, "wait_seconds": round(pause, 2)},
        )
        time.sleep(pause)


def _answer(response: BrazeResponse) -> ExportAnswer:
    body = response.body or {}
    object_prefix, url = body.get("object_prefix"), body.get("url")
    if not isinstance(object_prefix, str) or not _OBJECT_PREFIX.fullmatch(object_prefix):
        raise _Failure(f"Braze answered HTTP {response.status} without a usable object_prefix", retryable=False)
    if url is not None and not isinstance(url, str):
        raise _Failure(f"Braze answered HTTP {response.status} with a url that is not a string", retryable=False)
    return ExportAnswer(object_prefix, url or None)


def _refusal(response: BrazeResponse, config: ExportStarterSettings) -> str:
    if response.status == 401:
        return (
            "Braze answered 401 Unauthorized twice (the key was re-read in between): the secret "
            f"{config.braze_api_key_secret_arn} must hold a REST API key of the workspace on "
            f"{config.braze_rest_endpoint}, unquoted"
        )
    if response.status == 403:
        return (
            "Braze answered 403: the REST API key lacks the users.export.global_control_group permission, "
            "or the account cannot use this endpoint"
        )
    if response.status == 404:
        return f"Braze answered 404: {config.braze_rest_endpoint} does not serve {GCG_EXPORT_PATH}"
    return f"Braze refused the export request: HTTP {response.status}, {response.message}"


reset = credentials.reset  # tests: forget the key holder and the pooled client
