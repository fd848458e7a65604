"""IngestApiFunction: Braze-compatible /users/track, /users/identify, /users/delete, /users/alias/new and
/users/merge, and signed payment webhooks, into the events queue."""

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from braze_forwarder.http_answers import JsonAnswers, RequestRejected
from braze_forwarder.ingest.api import receive
from braze_forwarder.ingest.service import Answer
from braze_forwarder.ingest.webhooks.receiver import receive_webhook
from braze_forwarder.observability import MetricUnit, logger, metrics, tracer

# Also behind a Lambda function URL (FrontDoor=FunctionUrl): its events are payload format 2.0 too,
# with routeKey and stage "$default" and no pathParameters, none of which this resolver reads (it
# routes by rawPath), so one resolver serves both doors (docs/ingest-api.md, "Front door").
app = APIGatewayHttpResolver()
answers = JsonAnswers(
    app,
    unexpected=RequestRejected(
        500, "internal_error", "an unexpected error occurred; retry, with the same Idempotency-Key if you sent one"
    ),
    correlation_header=True,
    rejected_metric="RequestsRejected",
)


@app.post(
    "/users/track", operation_id="usersTrack", summary="Track users: attributes, events, purchases", tags=["ingest"]
)
def users_track() -> Response[dict]:
    return _respond(*receive(app.current_event, "track", app.lambda_context))


@app.post("/users/identify", operation_id="usersIdentify", summary="Identify alias-only users", tags=["ingest"])
def users_identify() -> Response[dict]:
    return _respond(*receive(app.current_event, "identify", app.lambda_context))


# Deletes and merges wait in the queue behind the ordering fence; their order records are written
# before the answer (docs/ordering.md).
@app.post("/users/delete", operation_id="usersDelete", summary="Delete users", tags=["ingest"])
def users_delete() -> Response[dict]:
    return _respond(*receive(app.current_event, "delete", app.lambda_context))


@app.post("/users/alias/new", operation_id="usersAliasNew", summary="Create user aliases", tags=["ingest"])
def users_alias_new() -> Response[dict]:
    return _respond(*receive(app.current_event, "alias", app.lambda_context))


@app.post("/users/merge", operation_id="usersMerge", summary="Merge users", tags=["ingest"])
def users_merge() -> Response[dict]:
    return _respond(*receive(app.current_event, "merge", app.lambda_context))


# No bearer key: the provider's signature over the raw body is the authentication.
@app.post(
    "/webhooks/<provider>", operation_id="receiveWebhook", summary="A payment provider's webhook", tags=["webhooks"]
)
def webhook(provider: str) -> Response[dict]:
    return _respond(receive_webhook(app.current_event, provider, app.lambda_context), False)


@app.not_found
def not_found(_error: Exception) -> Response:
    return answers.json(
        404,
        {
            "type": "not_found",
            "reason": "no such route; POST /users/track, /users/identify, /users/delete, /users/alias/new, "
            "/users/merge or /webhooks/{provider}",
        },
    )


def _respond(answer: Answer, replayed: bool) -> Response:
    if not replayed:
        return answers.json(answer.status, answer.body)
    metrics.add_metric(name="RequestsReplayed", unit=MetricUnit.Count, value=1)
    return answers.json(answer.status, answer.body, {"Idempotent-Replayed": "true"})


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # API Gateway's request id, read directly: correlation_id_path would run a JMESPath query per request.
    logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
    return app.resolve(event, context)
