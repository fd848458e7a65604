"""ImportWorkerFunction's logic: one range of a file → its rows queued as envelopes, chunk by chunk.

A chunk is `chunk_rows` lines. For each: read them (a streamed ranged GET with If-Match on the
file's ETag, so the file cannot change under a resumed range), map and validate each row as the
API would, keep the malformed ones in the rejected-objects store (a deterministic key per chunk:
written again after a crash, it is the same object), note on the range that the chunk is being
sent, queue the rest as envelopes whose ids are derived from (import, range, chunk, envelope
number), then acknowledge the chunk with a conditional write (records.ImportsTable.advance). A
retry starts at the last acknowledged chunk and rebuilds the very same envelopes.

Exactly once into the queue (docs/imports.md has the full argument): SQS standard takes no
idempotency key, so a worker killed after SQS took a chunk and before its acknowledgement leaves a
chunk that may or may not be on the queue — the range's note says which chunk, how many envelopes
and since when. The resumed range does not send such envelopes until it knows: an envelope in the
delivery ledger was received (a sender records every `dedupe` envelope it finishes before deleting
it) and is skipped; when EventsQueue is empty (visible, in flight and delayed all 0, read before
the ledger) every message SQS ever took was received and deleted, hence recorded, so an envelope
still not in the ledger was never queued and is sent. Until then the range waits — its task goes
back with a delay (IMPORT_RESUME_RECHECK_SECONDS), it keeps its place in the file — and after
IMPORT_RESUME_WAIT_SECONDS it sends them anyway, counted (ImportEnvelopesMaybeQueuedTwice): the
sender's ledger still delivers a copy once. Running out of time or a cancel never opens the window:
the worker stops between chunks. A partial refusal by SQS records which envelopes were accepted
before it raises; the retry skips them and treats the rest as above.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from braze_forwarder import aws, ledger_entries, queue, rows
from braze_forwarder.braze.validation import NestingTooDeep, check_track_object
from braze_forwarder.config import ImportSettings
from braze_forwarder.imports import ranges, records, tasks
from braze_forwarder.imports.start import received_base_ms
from braze_forwarder.observability import MetricUnit, logger, metrics
from braze_forwarder.s3_stream import S3ObjectReader, buffered

# A namespace of our own for envelope ids (uuid5): the same chunk always gets the same ids.
_ENVELOPE_NAMESPACE = uuid.UUID("5f0c1d52-6a43-4b7e-9f0e-2d8a3c1b7e10")
_KEPT_ROW_CHARS = 64 * 1024  # a rejected row is kept with its text, up to this much


class RangeBusy(Exception):
    """Another worker holds the range's lease; the task goes back to the queue and tries later."""


class _LeaseLost(Exception):
    """The range moved or another worker took its lease while this one worked: it stops, sending nothing."""


@dataclass
class WorkerParts:
    """What a worker writes to, handed in: the real ones in the Lambda, wrapped ones in tests."""

    table: records.ImportsTable
    send: Callable[[Sequence[str]], None]  # envelopes onto EventsQueue; raises queue.QueueUnavailable
    requeue: Callable[[str, int], None]  # a task onto ImportTasksQueue after a delay in seconds (0-900)
    rejected_bucket: str
    # Of these envelope ids, the ones a sender has already received (they are in the delivery ledger):
    # SQS took them before a crash, so a resumed range does not queue them again. None: not consulted.
    already_queued: Callable[[Sequence[str]], Collection[str]] | None = None
    # Messages on EventsQueue, visible, in flight and delayed together (0: every message SQS took was
    # received and deleted). None: not known, so an interrupted chunk waits for the ledger or the bound.
    events_waiting: Callable[[], int] | None = None
    clock: Callable[[], float] = time.time  # epoch seconds; tests pass their own


def real_parts(config: ImportSettings) -> WorkerParts:
    ledger = config.ledger_table
    return WorkerParts(
        table=records.ImportsTable(config.imports_table, config.import_ttl_days),
        send=lambda bodies: queue.send_messages(config.events_queue_url, bodies),
        requeue=lambda body, delay: queue.send_messages(config.import_tasks_queue_url, [body], delay_seconds=delay),
        rejected_bucket=config.rejected_bucket,
        already_queued=(lambda ids: ledger_entries.done_positions(ledger, ids).keys()) if ledger else None,
        events_waiting=lambda: queue.messages_waiting(config.events_queue_url),
    )


def envelope_id(import_id: str, index: int, chunk: int, number: int) -> str:
    return str(uuid.uuid5(_ENVELOPE_NAMESPACE, f"{import_id}/{index}/{chunk}/{number}"))


def rejects_prefix(import_id: str) -> str:
    return f"rejected/imports/{import_id}/"


def run_task(
    body: str, config: ImportSettings, parts: WorkerParts, remaining_seconds: Callable[[], float] | None = None
) -> str:
    """Carry out one range task; return what happened (for logs and tests)."""
    try:
        task = tasks.decode(body)
    except tasks.TaskError as exc:
        logger.error("not an import task; dropped", extra={"reason": str(exc)})
        metrics.add_metric(name="ImportTasksInvalid", unit=MetricUnit.Count, value=1)
        return "invalid"
    logger.append_keys(import_id=task.import_id, range=task.range)
    record = parts.table.get(task.import_id)
    if record is None:
        logger.error("task for an unknown (or expired) import; dropped")
        metrics.add_metric(name="ImportTasksInvalid", unit=MetricUnit.Count, value=1)
        return "unknown_import"
    if record.status not in records.ACTIVE:
        logger.info("the import is no longer running", extra={"status": record.status})
        return record.status
    state = parts.table.get_range(task.import_id, task.range)
    if state is None:
        logger.error("task for a range the import does not have; dropped")
        return "unknown_range"
    if state.done:  # acknowledged whole by an earlier attempt, which may have died before finishing the import
        finish_if_done(parts.table, task.import_id)
        return "done"
    owner = uuid.uuid4().hex
    lease_ms = config.import_lease_seconds * 1000
    if not parts.table.claim(task.import_id, task.range, owner, lease_ms):
        # Another worker holds the range: a duplicate task while it runs, or a worker that died
        # less than a lease ago. Either way this task comes back after the queue's visibility
        # timeout (ten times the worker's timeout, longer than any lease) and finds the range done
        # or free; dropping it could orphan the range of a worker that died.
        raise RangeBusy(f"range {task.range} of {task.import_id} is held by another worker")
    skip = state.sent
    if state.interrupted:
        placed = _place_interrupted_chunk(config, parts, task.import_id, state)
        if placed is None:
            # Requeued before the release: if the requeue fails, this task's own retry comes back
            # after the lease is over.
            parts.requeue(body, config.import_resume_recheck_seconds)
            parts.table.release(task.import_id, task.range, owner)
            metrics.add_metric(name="ImportRangesDeferred", unit=MetricUnit.Count, value=1)
            return "deferred"
        skip = placed
    return _Range(config, parts, record, state, owner, remaining_seconds, skip).run()


def _place_interrupted_chunk(
    config: ImportSettings, parts: WorkerParts, import_id: str, state: records.Range
) -> frozenset[int] | None:
    """The envelopes of the interrupted chunk not to send again, or None: wait, it cannot be told yet.

    A worker began sending this chunk and never acknowledged it, so each of its envelopes that SQS
    did not answer for (`state.sent`) may be on EventsQueue or not. The queue's counts are read
    before the ledger: if the queue was empty at that moment, every message it ever took was
    received and finished by then — and a sender writes a `dedupe` envelope's ledger entry before
    the message is deleted — so the ledger read afterwards holds every envelope SQS took.
    """
    index, chunk = state.index, state.chunks
    pending = [position for position in range(state.sending_envelopes) if position not in state.sent]
    if not pending:
        return state.sent
    age_seconds = (int(parts.clock() * 1000) - state.sending_at_ms) / 1000
    if parts.already_queued is None:  # no ledger to ask: an empty queue would not say what was delivered
        metrics.add_metric(name="ImportEnvelopesMaybeQueuedTwice", unit=MetricUnit.Count, value=len(pending))
        return state.sent
    settled = age_seconds >= config.import_queue_counts_settle_seconds
    drained = parts.events_waiting is not None and settled and parts.events_waiting() == 0
    ids = {envelope_id(import_id, index, chunk, position): position for position in pending}
    received = set(parts.already_queued(list(ids)))
    skip = state.sent | {position for envelope, position in ids.items() if envelope in received}
    left = len(pending) - len(skip - state.sent)
    extra = {"chunk": chunk, "envelopes_received": len(received), "envelopes_unplaced": left}
    if not left:
        logger.info("every envelope of the interrupted chunk was received by a sender; none sent again", extra=extra)
        return skip
    if drained:
        logger.info("the events queue is empty: the unreceived envelopes were never queued; sending them", extra=extra)
        return skip
    if age_seconds >= config.import_resume_wait_seconds:
        logger.warning("an interrupted chunk's envelopes sent again unconfirmed", extra=extra)
        metrics.add_metric(name="ImportEnvelopesMaybeQueuedTwice", unit=MetricUnit.Count, value=left)
        return skip
    logger.info("an interrupted chunk may still wait on the events queue; the range looks again later", extra=extra)
    return None


class _Range:
    def __init__(
        self,
        config: ImportSettings,
        parts: WorkerParts,
        record: records.Import,
        state: records.Range,
        owner: str,
        remaining_seconds: Callable[[], float] | None,
        skip: frozenset[int] = frozenset(),
    ) -> None:
        self.config, self.parts, self.record, self.state, self.owner = config, parts, record, state, owner
        self.remaining_seconds = remaining_seconds
        self.skip = skip  # envelopes of the first chunk already queued (_place_interrupted_chunk)
        self.array = rows.ARRAYS[record.kind]
        self.source = f"import:{record.import_id}"
        self.max_object_bytes = queue.max_object_bytes(
            record.max_message_bytes, self.source, record.import_id, dedupe=True
        )
        self.base_ms = received_base_ms(record)
        self.counted = [0, 0, 0]  # rows read, queued, rejected in acknowledged chunks

    def run(self) -> str:
        try:
            return self._run()
        finally:  # once an invocation, acknowledged chunks only: a metric per chunk would flush every 100
            for name, value in zip(
                ("ImportRowsRead", "ImportRowsQueued", "ImportRowsRejected"), self.counted, strict=True
            ):
                if value:
                    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)

    def _run(self) -> str:
        config, record, state = self.config, self.record, self.state
        max_line = config.import_max_line_bytes
        reader = S3ObjectReader(aws.client("s3"), record.bucket, record.key, size=record.size, etag=record.etag)
        with buffered(reader) as stream:
            if state.next_byte == state.start:
                position = ranges.align(stream, state.start, max_line)
            else:  # an acknowledged chunk always ends at a line end
                stream.seek(state.next_byte)
                position = state.next_byte
            lines = ranges.lines(stream, position, state.end, max_line, numbered_from=state.lines)
            held = next(lines, None)  # one line read ahead: a chunk knows whether it is the range's last
            chunk = state.chunks
            sent_before = self.skip
            while True:
                if self._out_of_time():
                    self.parts.table.release(record.import_id, state.index, self.owner)
                    self.parts.requeue(tasks.encode(tasks.RangeTask(record.import_id, state.index)), 0)
                    logger.info("out of time; the range is handed to a fresh invocation", extra={"chunk": chunk})
                    return "continued"
                if self.parts.table.status(record.import_id) not in records.ACTIVE:
                    self.parts.table.release(record.import_id, state.index, self.owner)
                    logger.info("the import was cancelled; this range stops", extra={"chunk": chunk})
                    return "cancelled"
                batch: list[ranges.Line] = []
                while held is not None and len(batch) < record.chunk_rows:
                    batch.append(held)
                    held = next(lines, None)
                done = held is None
                end_byte = batch[-1].end if batch else position
                try:
                    progress = self._chunk(chunk, batch, sent_before, end_byte - position, done)
                except _LeaseLost:
                    logger.warning("the range moved under this worker (lease lost); it stops", extra={"chunk": chunk})
                    return "lost_lease"
                if not self.parts.table.advance(
                    record.import_id, state.index, self.owner, chunk, progress, config.import_lease_seconds * 1000
                ):
                    logger.warning("the range moved under this worker (lease lost); it stops", extra={"chunk": chunk})
                    return "lost_lease"
                self.counted[0] += progress.rows_read
                self.counted[1] += progress.rows_queued
                self.counted[2] += progress.rows_rejected
                position, chunk, sent_before = end_byte, chunk + 1, frozenset()
                if done:
                    break
        finish_if_done(self.parts.table, record.import_id)
        return "finished"

    def _out_of_time(self) -> bool:
        return self.remaining_seconds is not None and self.remaining_seconds() < self.config.time_reserve_seconds

    def _chunk(
        self, chunk: int, batch: list[ranges.Line], sent_before: frozenset[int], bytes_read: int, done: bool
    ) -> records.Progress:
        """Map, validate, keep the malformed, queue the rest of one chunk; its progress (not yet written)."""
        record, state = self.record, self.state
        items: list[queue.EncodedItem] = []
        rejected: list[dict[str, Any]] = []
        rows_read = 0
        for line in batch:
            if line.text is None:
                rows_read += 1
                rejected.append(
                    self._rejection(line, "LINE_TOO_LONG", f"longer than {self.config.import_max_line_bytes} bytes")
                )
                continue
            try:
                text = line.text.decode("utf-8-sig" if line.offset == 0 else "utf-8")
            except UnicodeDecodeError:
                rows_read += 1
                rejected.append(self._rejection(line, "NOT_UTF8", "the line is not UTF-8 text"))
                continue
            if not text.strip():
                continue  # a blank line is no row
            rows_read += 1
            if record.format == "csv":
                values, problem = rows.csv_row(record.header, text)
            else:
                values, problem = rows.ndjson_row(text)
            if values is None:
                rejected.append(self._rejection(line, "UNREADABLE_ROW", problem or "unreadable", text))
                continue
            try:
                obj = rows.to_object(values, record.mapping, record.format == "csv")
            except rows.MappingError as exc:
                rejected.append(self._rejection(line, "UNREADABLE_ROW", str(exc), text))
                continue
            try:
                encoded = queue.encode_object(obj)
            except (TypeError, ValueError):
                rejected.append(self._rejection(line, "UNREADABLE_ROW", "the row holds NaN or Infinity", text))
                continue
            try:
                braze_problem = check_track_object(self.array, obj, len(encoded))
            except NestingTooDeep:
                rejected.append(self._rejection(line, "NESTING_TOO_DEEP", "the row nests too deep", text, obj))
                continue
            if braze_problem is None and len(encoded) > self.max_object_bytes:
                reason = f"{len(encoded)} bytes as JSON; at most {self.max_object_bytes} fit a queue message"
                rejected.append(self._rejection(line, "OBJECT_TOO_LARGE", reason, text, obj))
                continue
            if braze_problem is not None:
                rejected.append(self._rejection(line, braze_problem.type, braze_problem.reason, text, obj))
                continue
            items.append((self.array, line.number, encoded))
        if rejected:
            self._keep(chunk, rejected)
        if items:
            self._queue(chunk, items, sent_before, batch[0].offset)
        return records.Progress(
            next_byte=batch[-1].end if batch else state.next_byte,
            lines=batch[-1].number if batch else state.lines,
            rows_read=rows_read,
            rows_queued=len(items),
            rows_rejected=len(rejected),
            bytes_read=bytes_read,
            done=done,
        )

    def _queue(self, chunk: int, items: list[queue.EncodedItem], sent_before: frozenset[int], offset: int) -> None:
        record, index = self.record, self.state.index
        bodies = queue.build_messages(
            "track",
            items,
            source=self.source,
            correlation_id=record.import_id,
            max_message_bytes=record.max_message_bytes,
            received_at=_iso_ms(self.base_ms + offset // 1024),
            # The whole file was accepted when the import started: a delete accepted later drops its rows.
            accepted_at=_iso_ms(record.started_at_ms),
            envelope_id=lambda number: envelope_id(record.import_id, index, chunk, number),
            dedupe=True,  # the ids above are deterministic: the sender skips a copy queued twice
        )
        pending = [position for position in range(len(bodies)) if position not in sent_before]
        if not pending:
            return
        # From here until the acknowledgement the chunk may be on the queue: say so on the range first.
        now_ms = int(self.parts.clock() * 1000)
        if not self.parts.table.note_sending(record.import_id, index, self.owner, chunk, len(bodies), now_ms):
            raise _LeaseLost()
        try:
            self.parts.send([bodies[position] for position in pending])
        except queue.QueueUnavailable as exc:
            accepted = {pending[i] for i in exc.queued_positions}
            self.parts.table.remember_sent(record.import_id, index, self.owner, chunk, accepted | sent_before)
            raise

    def _rejection(
        self, line: ranges.Line, error_type: str, reason: str, text: str | None = None, obj: Any = None
    ) -> dict[str, Any]:
        origin: dict[str, Any] = {
            "source": self.source,
            "import_id": self.record.import_id,
            "file": f"s3://{self.record.bucket}/{self.record.key}",
            "range": self.state.index,
            "range_line": line.number,
            "byte_offset": line.offset,
            "array": self.array,
        }
        if self.state.index == 0:  # only the first range knows how many lines come before it
            origin["line"] = line.number + (1 if self.record.format == "csv" else 0)
        return {
            "rejected_at": queue.utc_now_iso(),
            "reason": {"type": error_type, "message": reason},
            "origin": origin,
            "object": obj,
            "row": text[:_KEPT_ROW_CHARS] if text is not None else None,
        }

    def _keep(self, chunk: int, rejected: list[dict[str, Any]]) -> None:
        key = f"{rejects_prefix(self.record.import_id)}range-{self.state.index:05d}-chunk-{chunk:07d}.jsonl"
        body = "".join(queue.encode_object(entry) + "\n" for entry in rejected)
        aws.client("s3").put_object(
            Bucket=self.parts.rejected_bucket, Key=key, Body=body.encode("ascii"), ContentType="application/x-ndjson"
        )


def finish_if_done(table: records.ImportsTable, import_id: str) -> bool:
    """Mark the import finished when every range is acknowledged whole; True if this call did."""
    record = table.get(import_id)
    if record is None or record.ranges_done < record.ranges_total:
        return False
    if not table.set_status(import_id, records.FINISHED, only_from=records.ACTIVE):
        return False
    metrics.add_metric(name="ImportsCompleted", unit=MetricUnit.Count, value=1)
    logger.info(
        "import finished",
        extra={"rows_read": record.rows_read, "rows_queued": record.rows_queued, "rows_rejected": record.rows_rejected},
    )
    return True


def _iso_ms(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms // 1000)) + f".{epoch_ms % 1000:03d}Z"
