"""The last-sent store forgets a deleted user at once, and only that user."""

from __future__ import annotations

from braze_forwarder.delivery.attribute_state import DynamoAttributeStore, Written, user_id
from local.resources import LocalStack


def test_forget_removes_one_users_item_and_leaves_the_others(aws_stack: LocalStack) -> None:
    store = DynamoAttributeStore(aws_stack.refs["AttributeStateTable"], ttl_seconds=3600)
    deleted, kept = user_id(("external_id", "u-deleted")), user_id(("external_id", "u-kept"))
    for user in (deleted, kept):
        store.write(user, {"plan": Written("digest-of-pro", 1_000), "city": Written(None, None)})

    store.forget(deleted)

    assert store.read([deleted, kept]) == {kept: {"plan": Written("digest-of-pro", 1_000), "city": Written(None, None)}}
    store.forget(deleted)  # a retried delete (the sender's after a crash) changes nothing and does not fail
    store.forget(user_id(("external_id", "never-seen")))
    assert list(store.read([deleted, kept])) == [kept]
