"""The shared rate budget: the rate a backlog drains at, its 429s, and what the budget's table costs.

Several sender invocations (threads, each its own Sender and budget holder, as separate execution
environments are) drain a backlog of full 75-object /users/track calls against the Braze sandbox
enforcing Braze's limit scaled down (3,000 per 3 s ÷ 40 = 75 per 3 s, and ÷ 20 = 150 per 3 s), once
with the shared budget at 0.8 of it and once without. The budget table's operations are counted on
the DynamoDB client as they are sent (moto stands in for DynamoDB); a refused conditional write is
billed like any other, so every UpdateItem counts as one write request unit (items are < 1 KB).
"""

from __future__ import annotations

import boto3
from moto import mock_aws

from bench.common import print_table
from braze_forwarder import aws
from local.braze_sandbox import BrazeSandbox, SandboxConfig
from local.rate_budget_drill import DrillResult, drill
from local.resources import create_resources

KEY = "bench-braze-key-0123456789"
OBJECTS_PER_CALL = 75
# DynamoDB on-demand, us-east-1, 2026-12-07: $0.625 per million write request units, $0.125 per
# million read request units.
WRITE_DOLLARS_PER_MILLION = 0.625
READ_DOLLARS_PER_MILLION = 0.125
# (Braze's limit scaled down: requests per 3 s, the budget in requests per second, senders, calls per sender)
SCALES = ((75, 20.0, 4, 30), (75, 20.0, 8, 15), (150, 40.0, 4, 60))


def dollars_per_million_objects(result: DrillResult) -> float:
    objects = result.objects_delivered or 1
    return (result.budget_writes * WRITE_DOLLARS_PER_MILLION + result.budget_reads * READ_DOLLARS_PER_MILLION) / objects


def measure() -> list[tuple[int, float, DrillResult]]:
    results = []
    with mock_aws():
        aws.reset()
        stack = create_resources(boto3.session.Session(region_name="us-east-1"))
        boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
            SecretId=stack.refs["BrazeApiKeySecret"], SecretString=KEY
        )
        for limit, budget, senders, calls in SCALES:
            config = SandboxConfig(
                api_key=KEY, seed=1, latency_seconds=0.01, rate_limit_requests=limit, rate_limit_window_seconds=3.0
            )
            for enabled in (True, False):
                with BrazeSandbox(config) as braze:
                    result = drill(
                        stack,
                        braze,
                        budget_enabled=enabled,
                        senders=senders,
                        calls_per_sender=calls,
                        objects_per_call=OBJECTS_PER_CALL,
                        track_requests_per_second=budget,
                    )
                results.append((limit, budget, result))
        aws.reset()
    return results


def main() -> None:
    rows = []
    for limit, budget, result in measure():
        per_million = result.budget_writes / (result.objects_delivered or 1) * 1_000_000
        rows.append(
            [
                f"{result.senders} senders, {limit}/3s, "
                + (f"budget {budget:g}/s" if result.budget_enabled else "no budget"),
                f"{result.calls}",
                f"{result.rate_limited} ({result.rate_limited_share:.1%})",
                f"{result.delivered_calls_per_second:.1f}/s ({result.delivered_calls_per_second / budget:.2f})",
                f"{per_million:,.0f}",
                f"${dollars_per_million_objects(result):.4f}",
            ]
        )
    print_table(
        "Shared rate budget: several senders draining a backlog against a scaled-down Braze limit",
        ["run", "calls", "429s (share)", "accepted calls (÷ budget)", "table writes / M objects", "$ / M objects"],
        rows,
        "sender invocations at once, 75 objects per call, 4 in flight each; rate = calls Braze accepted per "
        "second from the first call to the last, plus one budget window; writes counted on the DynamoDB client. "
        "At Braze's full scale see docs/rate-budget.md, Cost.",
    )


if __name__ == "__main__":
    main()
