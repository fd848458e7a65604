"""How the soak judges: each object's fate from Braze's records, and every second delivery either
explained by a window or counted as unexplained. Built by hand, no servers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from braze_forwarder import queue
from soak.kills import AFTER_BRAZE_2XX, InvocationRecord, KillPlan, KillSwitch
from soak.load import LoadResult, Timed
from soak.report import analyse, render


def obj(identifier: str) -> dict[str, Any]:
    return {"external_id": "u", "name": "e", "time": "2026-05-01T12:00:00Z", "properties": {"soak_id": identifier}}


def call(at: float, *identifiers: str, status: int | None = 201, fault: str | None = None) -> SimpleNamespace:
    """A /users/track call Braze processed."""
    return SimpleNamespace(
        path="/users/track",
        processed=True,
        json={"events": [obj(i) for i in identifiers]},
        errors=[],
        status=status,
        fault=fault,
        time=at,
    )


def body(*identifiers: str) -> str:
    items = [("events", n, queue.encode_object(obj(i))) for n, i in enumerate(identifiers)]
    [message] = queue.build_messages("track", items, source="t", correlation_id=None, max_message_bytes=1 << 20)
    return message


def invocation(number: int, started: float, ended: float, message: str, message_id: str = "m1", **extra: Any):
    return InvocationRecord(
        number=number,
        started=started,
        ended=ended,
        message_ids=[message_id],
        bodies=[message],
        objects=len(queue.decode(message).items),
        receive_counts=[1],
        max_receive_count=1,
        **extra,
    )


def judge(
    requests: list[Any],
    invocations: list[InvocationRecord],
    accepted: tuple[str, ...] = ("a", "b"),
    kept: tuple[dict[str, Any], ...] = (),
    dlq: tuple[str, ...] = (),
    unanswered: tuple[tuple[float, float, frozenset[str]], ...] = (),
):
    switch = KillSwitch(KillPlan())
    switch.invocations = invocations
    switch.unanswered = list(unanswered)
    load = LoadResult(sent=len(accepted), requests=1, accepted=set(accepted))
    found = analyse(load, requests, {}, list(kept), list(dlq), switch)
    found.drained = True
    return found


def test_a_resend_after_a_kill_that_followed_braze_s_2xx_is_the_crash_window() -> None:
    message = body("a", "b")
    killed = invocation(1, 10.0, 11.0, message, killed_at=10.6, kill_point=AFTER_BRAZE_2XX)
    found = judge([call(10.5, "a", "b"), call(31.0, "a", "b")], [killed, invocation(2, 31.0, 32.0, message)])

    assert (found.delivered, found.lost, found.delivered_twice, found.unexplained) == (2, 0, 2, 0)
    assert found.window_kill == {AFTER_BRAZE_2XX: 2} and found.kills_causing_duplicates == 1
    assert found.passed


def test_an_object_the_killed_invocation_wrote_to_the_ledger_may_not_come_again() -> None:
    message = body("a", "b")
    envelope_id = queue.decode(message).id
    killed = invocation(
        1, 10.0, 11.0, message, killed_at=10.9, kill_point="after_ledger_write", ledger={envelope_id: frozenset({0})}
    )
    found = judge([call(10.5, "a"), call(31.0, "a", "b")], [killed, invocation(2, 31.0, 32.0, message)])

    assert found.unexplained == 1 and not found.passed  # "a" (position 0) was recorded as done
    assert found.unexplained_examples[0]["soak_id"] == "a"


def test_a_resend_inside_the_killed_invocation_is_not_the_kill_s_doing() -> None:
    message = body("a")
    killed = invocation(1, 10.0, 11.0, message, killed_at=10.9, kill_point=AFTER_BRAZE_2XX)
    found = judge([call(10.2, "a"), call(10.4, "a")], [killed], accepted=("a",))

    assert found.unexplained == 1


def test_a_lost_answer_explains_the_retry_and_is_reported_apart() -> None:
    message = body("a")
    requests = [call(10.2, "a", status=None, fault="timeout"), call(10.4, "a")]
    found = judge(requests, [invocation(1, 10.0, 11.0, message)], accepted=("a",))

    assert found.window_answer_lost == {"timeout": 1} and not found.window_kill and found.passed


def test_an_answer_braze_wrote_after_the_sender_gave_up_counts_as_lost() -> None:
    found = judge(
        [call(10.2, "a"), call(12.0, "a")],  # Braze's record says 201: it wrote the answer
        [invocation(1, 10.0, 13.0, body("a"))],
        accepted=("a",),
        unanswered=((10.1, 11.1, frozenset({"a"})),),  # the sender's read had timed out by then
    )

    assert found.window_answer_lost == {"answered after the sender gave up": 1} and found.unexplained == 0


def test_the_same_sqs_message_twice_without_a_failure_is_sqs_at_least_once() -> None:
    message = body("a")
    finished = invocation(1, 10.0, 11.0, message)
    again = invocation(2, 11.1, 12.0, message)
    found = judge([call(10.5, "a"), call(11.5, "a")], [finished, again], accepted=("a",))

    assert (found.window_sqs_again, found.unexplained) == (1, 0)


def test_the_same_objects_in_another_message_are_unexplained() -> None:
    found = judge(
        [call(10.5, "a"), call(11.5, "a")],
        [invocation(1, 10.0, 11.0, body("a"), "m1"), invocation(2, 11.1, 12.0, body("a"), "m2")],
        accepted=("a",),
    )

    assert found.unexplained == 1


def test_lost_is_accepted_minus_delivered_minus_kept_and_the_dlq_counts_as_not_delivered() -> None:
    kept = ({"object": obj("b"), "reason": {"type": "BLACKLISTED_EXTERNAL_USER_ID"}},)
    found = judge([call(10.0, "a"), call(10.0, "c")], [], accepted=("a", "b", "c", "d"), kept=kept, dlq=(body("c"),))

    assert (found.delivered, found.lost) == (1, 2)  # "c" sits in the DLQ, "d" never reached Braze
    assert found.rejected_by_braze == {"BLACKLISTED_EXTERNAL_USER_ID": 1}
    assert (found.dlq_messages, found.dlq_objects) == (1, 1)
    assert not found.passed
    assert "lost" in render(found, "title", 3) and "FAIL" in render(found, "title", 3)


def test_objects_the_api_still_answered_with_a_5xx_fail_the_soak_and_4xx_refusals_do_not() -> None:
    """A 5xx the client's retries could not get past is an object lost to its client: a run where the
    API failed every request must not pass because nothing was accepted to lose."""
    refused_by_rules = judge([call(10.0, "a", "b")], [])
    refused_by_rules.rejected_at_ingest.update({"400 INVALID_EVENT_NAME": 3})
    assert refused_by_rules.passed

    broken = judge([], [], accepted=())
    broken.rejected_at_ingest.update({"500 internal_error": 5000})
    assert broken.refused_by_server_errors == 5000
    assert not broken.passed


# ------------------------------------------------------------------ deleted users


def user_obj(identifier: str, user: str = "gone") -> dict[str, Any]:
    return {**obj(identifier), "external_id": user}


def user_call(at: float, *identifiers: str) -> SimpleNamespace:
    """A /users/track call Braze processed, of the deleted user's objects."""
    return SimpleNamespace(
        path="/users/track",
        processed=True,
        json={"events": [user_obj(i) for i in identifiers]},
        errors=[],
        status=201,
        fault=None,
        time=at,
    )


def delete_call(at: float, user: str = "gone") -> SimpleNamespace:
    return SimpleNamespace(
        path="/users/delete",
        processed=True,
        json={"external_ids": [user]},
        errors=[],
        status=202,
        fault=None,
        time=at,
    )


def user_body(*identifiers: str) -> str:
    items = [("events", n, queue.encode_object(user_obj(i))) for n, i in enumerate(identifiers)]
    [message] = queue.build_messages("track", items, source="t", correlation_id=None, max_message_bytes=1 << 20)
    return message


def drop_line(message: str, index: int) -> dict[str, Any]:
    """The sender's report line for a dropped object: where it was, never the object."""
    return {
        "reason": {"type": "DROPPED_AFTER_DELETE", "message": "accepted before a delete of its user"},
        "origin": {"envelope_id": queue.decode(message).id, "array": "events", "index": index},
        "object": None,
    }


def judge_deletion(
    requests: list[Any],
    invocations: list[InvocationRecord],
    kept: tuple[dict[str, Any], ...] = (),
    resent: frozenset[str] = frozenset(),
) -> Any:
    """User "gone": "p1", "p2" accepted before the delete (2xx at 10.0, delete sent at 10.1, 202 at
    10.2); "o" overlapping it (sent 10.05, 202 at 10.3); "n1", "n2" sent after it (10.4)."""
    spans = {"p1": Timed(9.8, 10.0), "p2": Timed(9.8, 10.0), "o": Timed(10.05, 10.3)}
    spans |= {"n1": Timed(10.4, 10.5), "n2": Timed(10.4, 10.5)}
    load = LoadResult(sent=5, requests=4, accepted=set(spans))
    load.users = dict.fromkeys(spans, "gone")
    load.spans = spans
    load.deletes = {"gone": Timed(10.1, 10.2)}
    switch = KillSwitch(KillPlan())
    switch.invocations = invocations
    found = analyse(load, requests, {}, list(kept), [], switch, resent)
    found.drained = True
    return found


def test_an_object_accepted_before_the_delete_and_delivered_after_it_fails_the_soak() -> None:
    before, after = user_body("p1", "p2", "o"), user_body("n1", "n2")
    found = judge_deletion(
        [user_call(10.5, "p1"), delete_call(50.0), user_call(60.0, "p2", "o"), user_call(62.0, "n1", "n2")],
        [invocation(1, 10.4, 11.0, before), invocation(2, 61.0, 63.0, after)],
    )

    deleted = found.deletions
    assert (deleted.before, deleted.before_delivered_after, deleted.late_examples) == (2, 1, ["p2"])
    assert (deleted.overlapping, deleted.overlapping_delivered_after) == (1, 1)  # reported, not judged
    assert (deleted.after, deleted.after_delivered_after, deleted.after_missing) == (2, 2, 0)
    assert found.lost == 0 and found.unexplained == 0
    assert not found.passed
    assert "delivered AFTER the delete 1 (must be 0) e.g. p2" in render(found, "title", 3)


def test_an_object_sent_after_the_delete_and_never_delivered_fails_the_soak() -> None:
    before, after = user_body("p1", "p2", "o"), user_body("n1", "n2")
    found = judge_deletion(
        [user_call(10.5, "p1", "p2", "o"), delete_call(50.0), user_call(62.0, "n1")],
        [invocation(1, 10.4, 11.0, before), invocation(2, 61.0, 63.0, after)],
    )

    deleted = found.deletions
    assert (deleted.after, deleted.after_delivered_after, deleted.after_missing) == (2, 1, 1)
    assert deleted.after_examples == ["n2"]
    assert found.lost == 1 and not found.passed


def test_an_object_sent_after_the_delete_but_delivered_before_it_fails_the_soak() -> None:
    found = judge_deletion(
        [user_call(10.5, "p1", "p2", "o"), user_call(20.0, "n1", "n2"), delete_call(50.0)],
        [invocation(1, 10.4, 11.0, user_body("p1", "p2", "o")), invocation(2, 19.0, 21.0, user_body("n1", "n2"))],
    )

    assert found.deletions.after_delivered_before == 2 and not found.passed


def test_dropped_before_the_delete_held_and_sent_after_it_passes_and_nothing_is_lost() -> None:
    before, after = user_body("p1", "p2", "o"), user_body("n1", "n2")
    # The sender dropped "p2" and "o" (accepted before the tombstone) and held "n1", "n2" behind the
    # delete: back to the queue in an envelope of its own, sent once the delete reached Braze.
    held = user_body("n1", "n2")
    requests = [user_call(10.5, "p1"), delete_call(50.0), user_call(62.0, "n1", "n2")]
    invocations = [
        invocation(1, 10.4, 11.0, before),
        invocation(2, 11.0, 11.5, after, "m2"),
        invocation(3, 61.0, 63.0, held, "m3"),
    ]
    drops = (drop_line(before, 1), drop_line(before, 2))

    found = judge_deletion(requests, invocations, drops, resent=frozenset({queue.decode(held).id}))

    deleted = found.deletions
    assert (deleted.before, deleted.before_dropped, deleted.before_delivered_after) == (2, 1, 0)
    assert (deleted.overlapping, deleted.overlapping_dropped) == (1, 1)
    assert (deleted.after, deleted.after_delivered_after, deleted.after_missing) == (2, 2, 0)
    assert (deleted.users, deleted.delivered, deleted.dropped_objects, deleted.dropped_lines) == (1, 1, 2, 2)
    assert (found.lost, found.queued_twice, found.held_resent) == (0, 0, 2)  # dropped objects are explained
    assert found.passed and "PASS" in render(found, "title", 3)

    # The same envelopes, had the sender not sent "n1", "n2" back itself: queued twice.
    assert judge_deletion(requests, invocations, drops).queued_twice == 2


def test_a_drop_of_an_object_sent_after_the_delete_or_a_delete_that_never_reached_braze_fails() -> None:
    after = user_body("n1", "n2")
    found = judge_deletion(
        [user_call(10.5, "p1", "p2", "o"), user_call(62.0, "n1")],
        [invocation(1, 10.4, 11.0, user_body("p1", "p2", "o")), invocation(2, 61.0, 63.0, after)],
        (drop_line(after, 1),),
    )

    assert found.deletions.not_delivered == ["gone"] and found.deletions.dropped_unexpected == ["n2"]
    assert found.lost == 0 and not found.passed
