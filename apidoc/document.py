"""The HTTP API's OpenAPI document, generated from the code.

    routes        every HttpApi event of template.yaml, and the Powertools resolver (`app`) of the
                  function it invokes: each resolver's own schema (paths, operation ids, summaries,
                  tags, path parameters) by `get_openapi_schema()`, merged with Powertools'
                  OpenAPIMerge — one HTTP API, several functions. A route of the template that no
                  resolver serves, or the reverse, stops the generation.
    bodies        apidoc.models (pydantic, documentation only) as components.schemas.
    error answers read from the modules each route runs (apidoc.answers): every (status, type).
    examples      the samples in events/, and answers a test replays through the real handlers.

Nothing here runs in Lambda: the handlers only carry their route metadata (strings), and this
package is imported by `make openapi`, the tests and the local stack, never by a function.
"""

from __future__ import annotations

import importlib
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apidoc import models
from apidoc.answers import ErrorAnswer, error_answers
from braze_forwarder.http_answers import braze_message

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
OPENAPI_JSON = ROOT / "openapi.json"
SCHEMAS = "#/components/schemas/"
# On a request example: the objects in it the API refuses (and lists in the answer's errors), which
# its schema, describing valid objects, does not take either.
REFUSED = "x-refused-objects"

_INGEST_MODULES = (
    "braze_forwarder.ingest.api",
    "braze_forwarder.ingest.auth",
    "braze_forwarder.request_body",
    "braze_forwarder.ingest.idempotency",
    "braze_forwarder.ingest.service",
)
# /users/delete, /users/alias/new, /users/merge: the same path, plus their rules and order records.
_USER_DATA_MODULES = (*_INGEST_MODULES, "braze_forwarder.ingest.user_data")
_WEBHOOK_MODULES = (
    "braze_forwarder.request_body",
    "braze_forwarder.ingest.webhooks.receiver",
    "braze_forwarder.ingest.webhooks.base",
    "braze_forwarder.ingest.webhooks.once",
    "braze_forwarder.ingest.webhooks.signing_secrets",
    "braze_forwarder.ingest.webhooks.stripe",
    "braze_forwarder.ingest.webhooks.paddle",
    "braze_forwarder.ingest.webhooks.google_oidc",
    "braze_forwarder.ingest.webhooks.google_play",
    "braze_forwarder.ingest.webhooks.app_store",
    "braze_forwarder.ingest.webhooks.app_store_jws",
)
_CALLBACK_MODULES = ("braze_forwarder.request_body", "braze_forwarder.exports.callback")

# What each error type means, for the reader of the document (the reason says it for one request).
WHEN: dict[str, str] = {
    "empty_body": "the request has no body",
    "malformed_json": "the body is not JSON",
    "invalid_number": "NaN, Infinity or a number past a double's range (1e400) in the body",
    "duplicate_key": "an object in the body repeats a key",
    "nesting_too_deep": "the body nests deeper than MAX_JSON_DEPTH (32)",
    "invalid_encoding": "the body is not UTF-8",
    "invalid_base64": "API Gateway marked the body base64 but it is not",
    "invalid_body": "the body is not the JSON object this route takes",
    "unknown_field": "a top-level field this route does not take",
    "empty_request": "no object in any array",
    "no_valid_objects": "every object was refused: nothing was queued (the errors say why)",
    "invalid_idempotency_key": "Idempotency-Key is not 1-255 printable ASCII characters",
    "unauthorized": "missing or unknown key (the answer never says which)",
    "request_in_progress": "a request with the same Idempotency-Key is being processed right now",
    "payload_too_large": "the body is over MAX_BODY_BYTES (MaxBodyBytes, 4 MB by default)",
    "idempotency_key_reused": "the same Idempotency-Key with another body, within IDEMPOTENCY_TTL_SECONDS",
    "mixed_identifier_types": "a /users/delete body names more than one identifier type (Braze takes one)",
    "too_many_objects": "more than 50 identifiers, aliases or merge updates (Braze's limit per request)",
    "order_store_unavailable": (
        "the order records (tombstones, aliases, merges) could not be written in time: nothing was queued"
    ),
    "queue_unavailable": "the queue did not take the whole request: retry it unchanged; nothing is queued twice",
    "idempotency_store_unavailable": "the idempotency store cannot be reached: nothing is confirmed",
    "internal_error": "a bug: the X-Correlation-Id finds it in the function's log",
    "malformed_signature_header": "the provider's signature header cannot be read",
    "invalid_event": "the body is not one of the provider's events",
    "unsupported_event": "a Stripe thin (v2) event: register the endpoint with snapshot events",
    "livemode_mismatch": "a Stripe event of the mode this stack does not take (StripeLiveMode)",
    "missing_signature": "the provider's signature header is missing",
    "invalid_signature": "no signature matches the body with this endpoint's secrets",
    "stale_timestamp": "the signature's timestamp is older than the tolerance (a replay)",
    "future_timestamp": "the signature's timestamp is further ahead than the tolerance",
    "unknown_provider": "not a provider this stack takes",
    "malformed_notification": 'an App Store body that is not {"signedPayload": "<JWS>"} with Apple\'s fields',
    "unsupported_algorithm": "an App Store JWS not signed with ES256",
    "broken_certificate_chain": "the App Store JWS's x5c is not a leaf, intermediate and root that sign each other",
    "untrusted_root": "the x5c chain does not end in Apple Root CA - G3 (APP_STORE_TRUSTED_ROOT_SHA256)",
    "wrong_certificate": "a certificate of the chain lacks Apple's extension (leaf or intermediate)",
    "certificate_not_valid": "a certificate of the chain was not valid at the payload's signedDate",
    "stale_notification": "an App Store notification signed longer ago than duplicates are remembered (a replay)",
    "future_notification": "an App Store notification whose signedDate is ahead of now",
    "wrong_bundle_id": "an App Store notification for another app (AppStoreBundleId, AppStoreAppAppleId)",
    "wrong_environment": "an App Store notification of an environment this stack does not take (AppStoreEnvironments)",
    "wrong_app": "the transaction or renewal info is for another app or environment than its notification",
    "provider_not_configured": "App Store notifications are not configured (AppStoreBundleId is empty)",
    "event_in_progress": "another delivery of the same event is being processed",
    "payment_in_progress": "another event of the same payment is being processed",
    "dedupe_store_unavailable": "the store that keeps events from being counted twice cannot be reached",
    "rejected_store_unavailable": "the event could not be kept for an operator",
    "webhook_secrets_unavailable": "the signing secrets cannot be read",
    "push_not_configured": "Google Play: GooglePlayPushAudience and GooglePlayPushServiceAccount are not set",
    "invalid_token": "Google Play: the push's OIDC token is not signed by one of Google's published keys",
    "expired_token": "Google Play: the push's OIDC token has expired (a replay)",
    "token_not_yet_valid": "Google Play: the push's OIDC token is issued in the future",
    "token_lifetime_too_long": "Google Play: the push's OIDC token lives longer than Google's (an hour)",
    "wrong_audience": "Google Play: the push's OIDC token is for another audience than GooglePlayPushAudience",
    "wrong_issuer": "Google Play: the push's OIDC token was not issued by Google",
    "wrong_service_account": "Google Play: the push's token is not GooglePlayPushServiceAccount's, or unverified",
    "wrong_package": "Google Play: the notification is for another app than GooglePlayPackageName",
    "google_keys_unavailable": "Google Play: Google's public keys cannot be fetched to check the push token",
    "google_play_api_unavailable": "Google Play: the purchase cannot be looked up now; Pub/Sub redelivers the push",
    "url_not_allowed": "the callback's download url is not on ExportUrlAllowedHosts",
    "not_found": "no job with this id and token (any mismatch answers the same)",
    "export_not_started": "the job's export was never started",
    "unavailable": "DynamoDB, S3 or SQS failed: Braze calls again",
}
# A reason the code computes (an f-string) gets this example, checked against the code's pattern.
REASON_EXAMPLES: dict[str, str] = {
    "mixed_identifier_types": (
        "only one of external_ids, user_aliases, braze_ids, email_addresses or phone_numbers can be included in a "
        "single request; this one has external_ids, braze_ids"
    ),
    "too_many_objects": "a single request may not contain more than 50 identifiers; this one has 51",
    "empty_request": "the body has no objects; send at least one in attributes, events, purchases",
    "invalid_body": "'events' must be an array of objects",
    "unknown_field": "unknown top-level field 'event'; this endpoint takes attributes, events, purchases",
    "malformed_json": "the body is not valid JSON: Expecting value at line 1 column 12",
    "nesting_too_deep": "the body nests arrays or objects too deeply",
    "payload_too_large": "the body is larger than 4194304 bytes; split it into several requests",
    "livemode_mismatch": (
        "this deployment takes test-mode events only; register a separate endpoint for the other mode"
    ),
    "malformed_signature_header": "the Stripe-Signature header is malformed: no t= timestamp",
    "invalid_event": "the body is not a Stripe event object",
    "missing_signature": "the Stripe-Signature header is missing; the request is not signed",
    "invalid_signature": "no signature in Stripe-Signature matches the body with this endpoint's signing secrets",
    "stale_timestamp": "the Stripe-Signature timestamp is more than 300 seconds old; a replay is refused",
    "future_timestamp": (
        "the Stripe-Signature timestamp is more than 300 seconds in the future; check the sender's clock"
    ),
    "unknown_provider": "no webhook provider by that name; POST /webhooks/{stripe|paddle|app_store|google_play}",
    "url_not_allowed": "the export url is not accepted: host example.com is not an allowed host",
    "malformed_notification": 'the body is not {"signedPayload": "<JWS>"}',
    "unsupported_algorithm": "signedPayload is not signed with ES256",
    "broken_certificate_chain": "signedPayload: the leaf certificate is not signed by the intermediate",
    "untrusted_root": "the certificate chain of signedPayload does not end in Apple's root certificate",
    "wrong_certificate": ("the leaf certificate of signedPayload lacks Apple's extension 1.2.840.113635.100.6.11.1"),
    "certificate_not_valid": "a certificate in the chain of signedPayload was not valid at the payload's signedDate",
    "stale_notification": (
        "the notification was signed more than 604800 seconds ago, longer than duplicates are remembered; "
        "a replay is refused"
    ),
    "future_notification": "the notification's signedDate is more than 300 seconds in the future",
    "wrong_bundle_id": "data.bundleId is not this deployment's app (APP_STORE_BUNDLE_ID)",
    "wrong_environment": (
        "this deployment takes Production notifications only (APP_STORE_ENVIRONMENTS); "
        "register a separate endpoint for the other environment"
    ),
    "wrong_app": "data.signedTransactionInfo is for another app or environment than the notification",
}
STATUS_TEXT = {
    400: "The request cannot be used as it is: fix it before sending it again.",
    401: "Not authenticated: nothing was accepted.",
    404: "Not found.",
    409: "A conflict: nothing was accepted.",
    413: "The body is too large: nothing was accepted.",
    422: "The Idempotency-Key was used with another body: nothing was accepted.",
    429: "API Gateway's throttling (ApiThrottlingRateLimit, ApiThrottlingBurstLimit): retry with backoff.",
    500: "An unexpected error: retry.",
    503: "A dependency is unavailable: retry; nothing that was accepted is accepted twice.",
}
# Error types answered with their own body shape rather than {type, reason}.
SPECIAL_ERRORS = {"no_valid_objects": "NoValidObjects"}
_HEADERS = {
    "X-Correlation-Id": "The request's id: it travels with the queued objects and is in every log line.",
    "Idempotent-Replayed": "true when this is the stored answer to an earlier request with the same Idempotency-Key.",
    "Retry-After": "Seconds to wait before retrying.",
    "WWW-Authenticate": "Bearer",
}


def _sample_body(name: str) -> Any:
    return json.loads(json.loads((EVENTS / name).read_text())["body"])


def _webhook_samples() -> dict[str, Any]:
    return {
        path.stem.removeprefix("webhook_"): {"summary": path.name, "value": _sample_body(path.name)}
        for path in sorted(EVENTS.glob("webhook_*.json"))
    }


# The answers a test (tests/apidoc/test_openapi_examples.py) replays through the real handlers.
TRACK_SAMPLE_ANSWER = {
    "message": "success",
    "attributes_queued": 2,
    "events_queued": 1,
    "purchases_queued": 1,
    "errors": [
        {
            "input_array": "events",
            "index": 1,
            "type": "BAD_EVENT_NAME",
            "reason": "name must be a non-empty string of at most 255 characters that does not start with $.",
        }
    ],
}
NO_VALID_OBJECTS_REQUEST = {
    "events": [{"external_id": "user-1002", "name": "$reserved", "time": "2026-11-22T07:39:30Z"}]
}
NO_VALID_OBJECTS_ANSWER = {
    "message": "Bad Request",
    "type": "no_valid_objects",
    "reason": "every object in the request is invalid; see errors",
    "errors": [{**TRACK_SAMPLE_ANSWER["errors"][0], "index": 0}],  # type: ignore[dict-item]
}
IDENTIFY_SAMPLE_ANSWER = {"message": "success", "aliases_queued": 1, "errors": []}
DELETE_SAMPLE_REQUEST = {
    "external_ids": ["user-1001", ""],
}
DELETE_SAMPLE_ANSWER = {
    "message": "success",
    "deleted": 1,
    "errors": [
        {
            "input_array": "external_ids",
            "index": 1,
            "type": "BAD_EXTERNAL_ID",
            "reason": "external_id must be a non-empty string.",
        }
    ],
}
DELETE_EMAIL_REQUEST = {
    "email_addresses": [{"email": "leaving@example.com", "prioritization": ["identified", "most_recently_updated"]}]
}
ALIAS_SAMPLE_REQUEST = {
    "user_aliases": [
        {"alias_name": "device-8c1f", "alias_label": "device_id"},
        {"alias_name": "crm-77", "alias_label": "crm_id", "external_id": "user-1001"},
    ]
}
ALIAS_SAMPLE_ANSWER = {"message": "success", "aliases_queued": 2, "errors": []}
MERGE_SAMPLE_REQUEST = {
    "merge_updates": [
        {"identifier_to_merge": {"external_id": "old-user-1"}, "identifier_to_keep": {"external_id": "user-1001"}},
        {
            "identifier_to_merge": {
                "email": "a@example.com",
                "prioritization": ["unidentified", "most_recently_updated"],
            },
            "identifier_to_keep": {"user_alias": {"alias_name": "crm-77", "alias_label": "crm_id"}},
        },
    ]
}
MERGE_SAMPLE_ANSWER = {"message": "success", "merge_updates_queued": 2, "errors": []}
WEBHOOK_QUEUED_ANSWER = {"message": "queued", "attributes_queued": 0, "events_queued": 0, "purchases_queued": 2}
WEBHOOK_QUEUED_SAMPLE = "webhook_stripe_invoice_paid.json"


@dataclass(frozen=True)
class OperationDoc:
    """What the document says about one operation, beyond what its resolver says."""

    description: str
    success: int
    success_schema: str
    success_examples: Callable[[], dict[str, Any]]
    answered_by: tuple[str, ...]
    """The modules whose error answers the route gives (apidoc.answers)."""
    request_schema: dict[str, Any]
    request_examples: Callable[[], dict[str, Any]]
    request_required: bool = True
    security: list[dict[str, list[str]]] = field(default_factory=list)
    parameters: Callable[[], list[dict[str, Any]]] = list
    answer_headers: tuple[str, ...] = ()
    success_headers: tuple[str, ...] = ()


def _idempotency_key() -> list[dict[str, Any]]:
    return [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": (
                "A retry with the same key and body answers what the first request answered (with "
                "Idempotent-Replayed: true) and queues nothing; the same key with another body is 422. Keys are "
                "scoped to the client and remembered for IDEMPOTENCY_TTL_SECONDS (24 hours)."
            ),
            "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
            "example": "order-1042",
        }
    ]


def _webhook_parameters() -> list[dict[str, Any]]:
    from braze_forwarder.ingest.webhooks import PROVIDERS

    parameters: list[dict[str, Any]] = [
        {
            "name": "provider",
            "in": "path",
            "required": True,
            "description": "The payment provider; register its URL in the provider's dashboard.",
            "schema": {"type": "string", "enum": list(PROVIDERS)},
        }
    ]
    for name, provider in PROVIDERS.items():
        if not getattr(provider.signature, "uses_signing_secrets", True):
            continue  # the App Store: signed inside the body (signedPayload), no header
        header = provider.signature.header
        parameters.append(
            {
                "name": header,
                "in": "header",
                "required": False,
                "description": f"Required for {name}: "
                + getattr(provider.signature, "description", "its HMAC-SHA256 signature of the exact raw body."),
                "schema": {"type": "string"},
            }
        )
    return parameters


def _callback_parameters() -> list[dict[str, Any]]:
    return [
        {
            "name": "job_id",
            "in": "path",
            "required": True,
            "description": "The export job, as the export starter gave it to Braze in the callback URL.",
            "schema": {"type": "string"},
            "example": "gcg-20261122T060000Z",
        }
    ]


OPERATIONS: dict[str, OperationDoc] = {
    "usersTrack": OperationDoc(
        description=(
            "Exactly Braze's `/users/track` body, to the forwarder's URL with the forwarder's key. Every object is "
            "checked against Braze's rules; the valid ones are queued for Braze, the invalid ones come back in "
            "`errors` in Braze's own non-fatal shape and are not queued. When no object is valid the answer is "
            "400 `no_valid_objects`, with the same `errors`."
        ),
        success=202,
        success_schema="TrackAccepted",
        success_examples=lambda: {
            "sample": {"summary": "the answer to events/ingest_track.json", "value": TRACK_SAMPLE_ANSWER}
        },
        answered_by=("functions.ingest_api.app", *_INGEST_MODULES),
        request_schema={"$ref": SCHEMAS + "TrackRequest"},
        request_examples=lambda: {
            "sample": {
                "summary": "events/ingest_track.json",
                "description": "events[1] is refused (its name starts with $): the answer lists it in errors.",
                REFUSED: ["events[1]"],
                "value": _sample_body("ingest_track.json"),
            },
            "no_valid_objects": {
                "summary": "every object invalid: 400",
                REFUSED: ["events[0]"],
                "value": NO_VALID_OBJECTS_REQUEST,
            },
        },
        security=[{"ingestKey": []}],
        parameters=_idempotency_key,
        answer_headers=("X-Correlation-Id",),
        success_headers=("Idempotent-Replayed",),
    ),
    "usersIdentify": OperationDoc(
        description=(
            "Exactly Braze's `/users/identify` body: merges alias-only (or email- or phone-only) profiles into "
            "the user with the external_id. Validated and queued as on `/users/track`; the sender sends 50 "
            "objects per Braze call."
        ),
        success=202,
        success_schema="IdentifyAccepted",
        success_examples=lambda: {
            "sample": {"summary": "the answer to events/ingest_identify.json", "value": IDENTIFY_SAMPLE_ANSWER}
        },
        answered_by=("functions.ingest_api.app", *_INGEST_MODULES),
        request_schema={"$ref": SCHEMAS + "IdentifyRequest"},
        request_examples=lambda: {
            "sample": {"summary": "events/ingest_identify.json", "value": _sample_body("ingest_identify.json")}
        },
        security=[{"ingestKey": []}],
        parameters=_idempotency_key,
        answer_headers=("X-Correlation-Id",),
        success_headers=("Idempotent-Replayed",),
    ),
    "usersDelete": OperationDoc(
        description=(
            "Exactly Braze's `/users/delete` body: one identifier type per request, at most 50 identifiers. For "
            "each valid identifier a tombstone is recorded before the answer, then the delete is queued behind the "
            "ordering fence: nothing accepted before it reaches Braze after it, and what is accepted after it is "
            "delivered after it (docs/ordering.md). Invalid identifiers are listed in `errors` and not deleted."
        ),
        success=202,
        success_schema="DeleteAccepted",
        success_examples=lambda: {"sample": {"summary": "the answer to the sample", "value": DELETE_SAMPLE_ANSWER}},
        answered_by=("functions.ingest_api.app", *_USER_DATA_MODULES),
        request_schema={"$ref": SCHEMAS + "DeleteRequest"},
        request_examples=lambda: {
            "sample": {
                "summary": "two external ids, one invalid",
                REFUSED: ["external_ids[1]"],
                "value": DELETE_SAMPLE_REQUEST,
            },
            "email": {"summary": "by email address, with prioritization", "value": DELETE_EMAIL_REQUEST},
        },
        security=[{"ingestKey": []}],
        parameters=_idempotency_key,
        answer_headers=("X-Correlation-Id",),
        success_headers=("Idempotent-Replayed",),
    ),
    "usersAliasNew": OperationDoc(
        description=(
            "Exactly Braze's `/users/alias/new` body: at most 50 aliases, each with or without an external_id. "
            "Each alias is recorded before the answer, so objects accepted after it that use it reach Braze after "
            "it (docs/ordering.md)."
        ),
        success=202,
        success_schema="AliasNewAccepted",
        success_examples=lambda: {"sample": {"summary": "the answer to the sample", "value": ALIAS_SAMPLE_ANSWER}},
        answered_by=("functions.ingest_api.app", *_USER_DATA_MODULES),
        request_schema={"$ref": SCHEMAS + "AliasNewRequest"},
        request_examples=lambda: {
            "sample": {"summary": "an alias-only user and an alias", "value": ALIAS_SAMPLE_REQUEST}
        },
        security=[{"ingestKey": []}],
        parameters=_idempotency_key,
        answer_headers=("X-Correlation-Id",),
        success_headers=("Idempotent-Replayed",),
    ),
    "usersMerge": OperationDoc(
        description=(
            "Exactly Braze's `/users/merge` body: at most 50 merge updates of exactly identifier_to_merge and "
            "identifier_to_keep (external_id, user_alias, or email or phone with prioritization; two different "
            "users). Each merge is recorded before the answer and queued behind the ordering fence, after the "
            "objects accepted before it (docs/ordering.md)."
        ),
        success=202,
        success_schema="MergeAccepted",
        success_examples=lambda: {"sample": {"summary": "the answer to the sample", "value": MERGE_SAMPLE_ANSWER}},
        answered_by=("functions.ingest_api.app", *_USER_DATA_MODULES),
        request_schema={"$ref": SCHEMAS + "MergeRequest"},
        request_examples=lambda: {
            "sample": {"summary": "by external id; by email into an alias", "value": MERGE_SAMPLE_REQUEST}
        },
        security=[{"ingestKey": []}],
        parameters=_idempotency_key,
        answer_headers=("X-Correlation-Id",),
        success_headers=("Idempotent-Replayed",),
    ),
    "receiveWebhook": OperationDoc(
        description=(
            "The provider's own webhook request (Stripe snapshot events, Paddle Billing notifications, App Store "
            "Server Notifications V2, Google Play real-time developer notifications pushed by Pub/Sub). No ingest "
            "key: the provider's signature over the exact raw body is the authentication (for the App Store, the JWS "
            "in the body and its certificate chain, pinned to Apple's root; for Google Play, Google's OIDC token in "
            "Authorization, and the purchase is read from the Play Developer API). 200 only once what the "
            "event became is queued (or kept for an operator), so the provider retries everything else; a "
            "redelivered event id is answered `duplicate` and queues nothing."
        ),
        success=200,
        success_schema="WebhookAnswer",
        success_examples=lambda: {
            "queued": {"summary": f"the answer to events/{WEBHOOK_QUEUED_SAMPLE}", "value": WEBHOOK_QUEUED_ANSWER},
            "duplicate": {"summary": "the same event again", "value": {"message": "duplicate"}},
            "ignored": {
                "summary": "an event type the forwarder does not map",
                "value": {
                    "message": "ignored",
                    "reason": "customer.created is not an event this forwarder sends to Braze",
                },
            },
        },
        answered_by=("functions.ingest_api.app", *_WEBHOOK_MODULES),
        request_schema={
            "type": "object",
            "description": "The provider's event, byte for byte as signed.",
            "additionalProperties": True,
        },
        request_examples=_webhook_samples,
        parameters=_webhook_parameters,
        answer_headers=("X-Correlation-Id",),
    ),
    "exportCallback": OperationDoc(
        description=(
            "Braze calls this when a global control group export is ready; the export starter gives Braze the URL "
            "with the job's one-time token. Every failure of the job id or token answers the same 404. The "
            "export's files are found by listing the export bucket, and one copy task per file is queued for the "
            "copier. A repeated callback is a 200 that does nothing."
        ),
        success=200,
        success_schema="ExportCallbackAnswer",
        success_examples=lambda: {
            "success": {
                "summary": "copy tasks queued",
                "value": {"message": "success", "job_id": "gcg-20261122T060000Z", "files": 3},
            },
            "repeated": {
                "summary": "a repeated callback",
                "value": {"message": "already received", "job_id": "gcg-20261122T060000Z", "status": "copying"},
            },
        },
        answered_by=("functions.export_callback.app", *_CALLBACK_MODULES),
        request_schema={"$ref": SCHEMAS + "ExportCallbackBody"},
        request_examples=lambda: {
            "sample": {"summary": "events/export_callback.json", "value": _sample_body("export_callback.json")}
        },
        request_required=False,
        security=[{"exportToken": []}],
        parameters=_callback_parameters,
    ),
}

INFO_DESCRIPTION = """\
A Braze-compatible ingest API: send exactly what you send to Braze's `/users/track`,
`/users/identify`, `/users/delete`, `/users/alias/new` and `/users/merge`, to this API's URL (the
stack's `ApiUrl` output) with a forwarder key as the bearer token. Every object is checked against
Braze's rules before it is queued; invalid ones come back in Braze's own error shape, with a reason.
Deletes, aliases and merges keep their order against everything else accepted for the same user.
Plus signed Stripe and Paddle webhooks, and the callback Braze calls when an export is ready.

- **Errors** are JSON `{"type": "...", "reason": "..."}`: `type` is stable and machine-readable,
  `reason` one sentence that never repeats a secret or personal data. Each answer below lists the
  types it can carry.
- **X-Correlation-Id** comes with every answer of the ingest function; it travels with the queued
  objects and is in every log line.
- **Retries**: a 409, 429 or 503 is safe to retry (after `Retry-After` seconds when given), with the
  same `Idempotency-Key`.
- API Gateway answers some requests itself, with `{"message": "..."}`: 404 for another path, 413 for a
  body over 10 MB, 429 when throttled, 503 when a function does not answer within 30 s.

Generated from the code by `make openapi`; the local stack (`make run`) serves it at `/docs`.
"""


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str
    function: str
    module: str


def template_routes(template_path: Path = TEMPLATE) -> list[HttpRoute]:
    """Every HttpApi event of the template, with the module of the handler it invokes."""
    from sam_template import load_template  # here: cfn-lint's YAML loader is slow to import

    template = load_template(template_path)
    defaults = (template.get("Globals") or {}).get("Function") or {}
    routes = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = {**defaults, **(resource.get("Properties") or {})}
        for event in (properties.get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            code_uri = Path(str(properties["CodeUri"]))
            module_path = str(properties["Handler"]).rsplit(".", 1)[0]
            event_properties = event.get("Properties") or {}
            routes.append(
                HttpRoute(
                    method=str(event_properties.get("Method", "ANY")).upper(),
                    path=str(event_properties.get("Path", "$default")),
                    function=logical_id,
                    module=".".join([*code_uri.parts, module_path]),
                )
            )
    return routes


def build(template_path: Path = TEMPLATE, servers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the template's HTTP API, as a JSON-ready dict."""
    from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
    from aws_lambda_powertools.event_handler.openapi.models import Server, Tag

    routes = template_routes(template_path)
    merge = OpenAPIMerge(
        title="Braze event forwarder API",
        version=_version(),
        description=INFO_DESCRIPTION,
        servers=[Server(**server) for server in servers or default_servers()],
        tags=[
            Tag(
                name="ingest",
                description="Braze's user-data endpoints (track, identify, delete, aliases, merge), checked and queued",
            ),
            Tag(name="webhooks", description="Signed payment webhooks (Stripe, Paddle) into purchases and events"),
            Tag(name="exports", description="Braze's export callback, into the data lake"),
        ],
        on_conflict="error",
    )
    modules = list(dict.fromkeys(route.module for route in routes))
    for module in modules:
        merge.add_schema(importlib.import_module(module).app.get_openapi_schema())
    document = json.loads(merge.get_openapi_json_schema())
    _check_routes(document, routes)
    document["paths"] = {route.path: document["paths"][route.path] for route in routes}

    schemas = _model_schemas()
    for path_item in document["paths"].values():
        for operation in path_item.values():
            if operation["operationId"] not in OPERATIONS:
                raise KeyError(
                    f"apidoc: document the operation {operation['operationId']} in apidoc.document.OPERATIONS"
                )
            _describe(operation, OPERATIONS[operation["operationId"]], schemas)
    document["components"] = {
        "schemas": schemas,
        "securitySchemes": {
            "ingestKey": {
                "type": "http",
                "scheme": "bearer",
                "description": (
                    "A forwarder key (not your Braze key): only its SHA-256 is stored, in the stack's "
                    "IngestKeysSecret, with the client's name. Any failure answers the same 401."
                ),
            },
            "exportToken": {
                "type": "apiKey",
                "in": "query",
                "name": "token",
                "description": "The job's one-time token, in the callback URL the export starter gave Braze.",
            },
        },
    }
    return document


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def default_servers() -> list[dict[str, Any]]:
    return [
        {
            "url": "https://{apiId}.execute-api.{region}.amazonaws.com",
            "description": "A deployed stack: its ApiUrl output",
            "variables": {
                "apiId": {"default": "abc123", "description": "The IngestHttpApi's id"},
                "region": {"default": "us-east-1"},
            },
        },
        {"url": "http://127.0.0.1:3000", "description": "The local stack (make run)"},
    ]


def _check_routes(document: dict[str, Any], routes: list[HttpRoute]) -> None:
    served = {(method.upper(), path) for path, item in document.get("paths", {}).items() for method in item}
    exposed = {(route.method, route.path) for route in routes}
    if exposed - served:
        missing = ", ".join(f"{method} {path}" for method, path in sorted(exposed - served))
        raise ValueError(f"template.yaml routes {missing} to a function whose resolver has no such route")
    if served - exposed:
        extra = ", ".join(f"{method} {path}" for method, path in sorted(served - exposed))
        raise ValueError(f"a resolver serves {extra}, which template.yaml does not route to it (no HttpApi event)")


def _model_schemas() -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    _, definitions = models_json_schema(
        [(model, "validation") for model in (*models.REQUEST_MODELS, *models.ANSWER_MODELS)],
        ref_template=SCHEMAS + "{model}",
    )
    return dict(sorted(definitions["$defs"].items()))


def _describe(operation: dict[str, Any], doc: OperationDoc, schemas: dict[str, Any]) -> None:
    operation["description"] = doc.description
    generated = {(parameter["in"], parameter["name"]): parameter for parameter in operation.get("parameters", [])}
    for parameter in doc.parameters():
        generated[(parameter["in"], parameter["name"])] = parameter  # the documented one, with its description
    if generated:
        operation["parameters"] = list(generated.values())
    operation["requestBody"] = {
        "required": doc.request_required,
        "content": {"application/json": {"schema": doc.request_schema, "examples": doc.request_examples()}},
    }
    operation["security"] = doc.security
    responses: dict[str, Any] = {
        str(doc.success): {
            "description": schemas[doc.success_schema].get("description", "Accepted."),
            **_headers(doc.answer_headers + doc.success_headers),
            "content": {
                "application/json": {
                    "schema": {"$ref": SCHEMAS + doc.success_schema},
                    "examples": doc.success_examples(),
                }
            },
        }
    }
    by_status: dict[int, list[ErrorAnswer]] = {}
    for answer in error_answers(doc.answered_by):
        by_status.setdefault(answer.status, []).append(answer)
    by_status.setdefault(429, [])
    for status in sorted(by_status):
        responses[str(status)] = _error_response(status, by_status[status], doc)
    operation["responses"] = responses


def _error_response(status: int, answers: list[ErrorAnswer], doc: OperationDoc) -> dict[str, Any]:
    if not answers:  # API Gateway's own
        return {
            "description": STATUS_TEXT[status],
            "content": {
                "application/json": {
                    "schema": {"$ref": SCHEMAS + "GatewayMessage"},
                    "example": {"message": "Too Many Requests"},
                }
            },
        }
    types = list(dict.fromkeys(answer.type for answer in answers))
    missing = [name for name in types if name not in WHEN]
    if missing:
        raise KeyError(f"apidoc: describe the error type(s) {', '.join(missing)} in apidoc.document.WHEN")
    headers = list(dict.fromkeys(header for answer in answers for header in answer.headers))
    text = STATUS_TEXT.get(status, "") + (" Retry after Retry-After seconds." if "Retry-After" in headers else "")
    lines = [text, ""] + [f"- `{name}`: {WHEN[name]}" for name in types]
    plain = [name for name in types if name not in SPECIAL_ERRORS]
    variants: list[dict[str, Any]] = [
        {"$ref": SCHEMAS + SPECIAL_ERRORS[name]} for name in types if name in SPECIAL_ERRORS
    ]
    if plain:
        variants.append(
            {"allOf": [{"$ref": SCHEMAS + "Error"}], "properties": {"type": {"type": "string", "enum": plain}}}
        )
    examples = {name: {"summary": WHEN[name], "value": _error_example(name, answers)} for name in types}
    return {
        "description": "\n".join(lines).strip(),
        **_headers(doc.answer_headers + tuple(headers)),
        "content": {
            "application/json": {
                "schema": variants[0] if len(variants) == 1 else {"oneOf": variants},
                "examples": examples,
            }
        },
    }


def _error_example(name: str, answers: list[ErrorAnswer]) -> dict[str, Any]:
    if name == "no_valid_objects":
        return NO_VALID_OBJECTS_ANSWER
    sites = [answer for answer in answers if answer.type == name]
    constant = next((answer.reason for answer in sites if answer.reason is not None), None)
    reason = constant if constant is not None else REASON_EXAMPLES.get(name)
    if reason is None or not any(answer.matches(reason) for answer in sites):
        where = ", ".join(answer.where for answer in sites)
        raise ValueError(
            f"apidoc: REASON_EXAMPLES[{name!r}] must be a reason the code at {where} can give (now {reason!r})"
        )
    return {"message": braze_message(sites[0].status), "type": name, "reason": reason}


def _headers(names: tuple[str, ...]) -> dict[str, Any]:
    """{"headers": {...}} for a Response object, or nothing when there are none."""
    headers = {name: {"description": _HEADERS[name], "schema": {"type": "string"}} for name in dict.fromkeys(names)}
    return {"headers": headers} if headers else {}
