"""`rejects list --since` lists only the hours from `since` on, in both trees of the store."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from cli.rejects import _keys

# Rejected objects are filed by the hour they were kept and listed --since a time —
# make test runs these on other days (tests/clock.py).
pytestmark = pytest.mark.clock


@mock_aws
def test_since_skips_earlier_hours_of_both_trees_without_listing_them() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="rejects")
    keys = [
        "rejected/2026/05/01/11/a.jsonl",
        "rejected/2026/05/01/12/b.jsonl",
        "rejected/2026/05/02/00/c.jsonl",
        "rejected/webhooks/2026/04/30/23/d.jsonl",
        "rejected/webhooks/2026/05/01/12/e.jsonl",
        "rejected/2026/05/01/12/notes.txt",
    ]
    for key in keys:
        s3.put_object(Bucket="rejects", Key=key, Body=b"{}\n")

    assert sorted(_keys(s3, "rejects", "2026-05-01T12:30:00")) == [
        "rejected/2026/05/01/12/b.jsonl",
        "rejected/2026/05/02/00/c.jsonl",
        "rejected/webhooks/2026/05/01/12/e.jsonl",
    ]
    assert len(_keys(s3, "rejects", None)) == 5
