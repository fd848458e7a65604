"""The cold-start and cost benchmarks run at tiny scale and produce real answers (no timings asserted)."""

import math

import pytest

from bench import coldstart, cost, import_stack

pytestmark = pytest.mark.local


def test_a_cold_start_round_answers_the_representative_events(monkeypatch):
    monkeypatch.setattr(coldstart, "HANDLERS", tuple(h for h in coldstart.HANDLERS if h[0] in ("ingest", "sender")))

    results = coldstart.measure(rounds=1, tracing_modes=(False,))

    answers = {result["handler"]: result["answers"] for result in results if "handler" in result}
    # 202: all 75 objects queued; the sender's batch delivered with nothing sent back to the queue.
    assert answers == {"ingest": ["202"], "sender": ["0 failed"]}
    assert results[-1]["braze_calls"] >= 1
    assert len(coldstart.rows(results)) == 2


def test_billed_duration_scales_cpu_below_a_full_vcpu_and_rounds_up():
    assert cost.billed_ms(wall_ms=10.0, cpu_ms=1.0, memory_mb=1769) == 10
    assert cost.billed_ms(wall_ms=10.2, cpu_ms=2.0, memory_mb=3538) == 11  # above one vCPU: no faster
    # 256 MB: a seventh of a vCPU, so 2 ms of CPU bills as ~13.8 ms, plus the 3 ms spent waiting.
    assert cost.billed_ms(wall_ms=5.0, cpu_ms=2.0, memory_mb=256) == math.ceil(2.0 * 1769 / 256 + 3.0)


def test_the_cost_table_adds_every_charge_from_the_counted_calls():
    def runs(calls, wall_ms=10.0, cpu_ms=1.0, **extra):
        return [{"wall_ms": wall_ms, "cpu_ms": cpu_ms, "calls": calls, "status": 202, "failures": 0, **extra}] * 3

    send = {"sqs:SendMessageBatch": 1}
    keyed = {**send, "dynamodb:PutItem": 1, "dynamodb:UpdateItem": 1}
    figures = {
        "memory_mb": {"IngestApiFunction": 1769, "BrazeSenderFunction": 1024},
        # Lambda's own lines dropped for the ingest function, kept for the sender; an access log line.
        "platform_log_bytes": {"IngestApiFunction": 0, "BrazeSenderFunction": 264},
        "access_log_bytes": 200,
    }
    for objects in (1, 75):
        figures[f"ingest-{objects}-nokey"] = {"runs": runs(send, log_bytes=250), "body_bytes": 1000}
        figures[f"ingest-{objects}-key"] = {"runs": runs(keyed, log_bytes=250), "body_bytes": 1000}
        figures[f"sender-{objects}"] = {
            "runs": runs({}, wall_ms=1000.0, cpu_ms=0.0, log_bytes=736),
            "messages": 10,
            "objects": 10 * objects,
            "braze_calls_per_batch": 1.0,
        }

    rows, _notes = cost.costs(figures)

    table = {(row[0], row[1], row[2]): float(row[3].lstrip("$")) for row in rows}
    logs_column = {(row[0], row[1], row[2]): float(row[5].lstrip("$")) for row in rows}
    per_gb = 0.50 / 1000  # per million requests, per byte each: $0.50 per 10^9 bytes
    ingest = 0.20 + 10 / 1000 * 1769 / 1024 * 13.3334 + 0.40  # request + GB-s + one SQS send, per million
    sender = (0.20 + 1.0 * 1.0 * 13.3334 + 2 * 0.40) / 10  # invocation + GB-s + a receive and a delete, per message
    ingest_logs, sender_logs = 250 * per_gb, (736 + 264) * per_gb / 10  # per request; per single-object message
    assert table[("FunctionUrl", "1/request", "no")] == pytest.approx(
        ingest + sender + ingest_logs + sender_logs, abs=0.001
    )
    assert logs_column[("FunctionUrl", "1/request", "no")] == pytest.approx(ingest_logs + sender_logs, abs=0.001)
    assert table[("HttpApi", "1/request", "no")] == pytest.approx(
        ingest + sender + ingest_logs + sender_logs + 1.00 + 200 * per_gb, abs=0.001
    )
    assert table[("FunctionUrl", "1/request", "yes")] == pytest.approx(
        ingest + sender + ingest_logs + sender_logs + 2 * 0.625, abs=0.001
    )
    assert table[("FunctionUrl", "75/request", "no")] == pytest.approx(
        (ingest + ingest_logs) / 75 + sender / 75 + sender_logs / 75, abs=0.001
    )


def test_a_tiny_import_through_the_local_stack_loses_no_row_and_delivers_none_twice_with_workers_killed(
    monkeypatch,
):
    # 3,000 rows in 1,000-row chunks, a kill at every other chunk; a killed range comes back in seconds.
    monkeypatch.setattr(import_stack, "LEASE_SECONDS", 2)
    monkeypatch.setattr(import_stack, "TASK_VISIBILITY_SECONDS", 3)
    monkeypatch.setattr(import_stack, "RESUME_RECHECK_SECONDS", 2)
    monkeypatch.setattr(import_stack, "QUEUE_COUNTS_SETTLE_SECONDS", 0)
    calm, killed = import_stack.measure(3_000, kill_rates=(0.0, 0.5))

    for result in (calm, killed):
        assert result.rows_lost == 0 and result.rows_delivered == 3_000
        assert result.rows_delivered_twice == 0
        assert result.rows_queued == 3_000 + result.rows_queued_twice
        assert result.calls >= 3_000 // 75 and not result.notes
    assert not calm.kills and calm.rows_queued_twice == 0
    assert sum(killed.kills.values()) > 0 and killed.worker_invocations > calm.worker_invocations
