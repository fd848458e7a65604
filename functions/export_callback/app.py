"""ExportCallbackFunction: Braze's export callback → one copy task per export file on CopyTasksQueue."""

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from braze_forwarder.exports.callback import not_found, receive
from braze_forwarder.http_answers import JsonAnswers, RequestRejected
from braze_forwarder.observability import logger, metrics, tracer
from braze_forwarder.queue import QueueUnavailable

app = APIGatewayHttpResolver()
answers = JsonAnswers(
    app, unexpected=RequestRejected(500, "internal_error", "an unexpected error occurred; call again later")
)


@app.post(
    "/exports/<job_id>/callback", operation_id="exportCallback", summary="Braze's export callback", tags=["exports"]
)
def export_callback(job_id: str) -> Response[dict]:
    return answers.json(200, receive(app.current_event, job_id))


@app.not_found
def unknown_route(_error: Exception) -> Response:
    # The same answer as an unknown job: the route tells a caller no more than the job lookup does.
    return answers.json(404, not_found().body())


@app.exception_handler([ClientError, BotoCoreError, QueueUnavailable])
def unavailable(_error: Exception) -> Response:
    # DynamoDB, S3 or SQS failed: a 503 invites Braze to call again, and a repeated callback
    # finishes what this one started.
    logger.exception("export callback could not be handled")
    return answers.answer(RequestRejected(503, "unavailable", "the export could not be recorded; call again later"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
