"""Erasing deleted users from the rejected-objects store: RejectsEraserFunction, daily, and the
operator's `rejects erase` (docs/personal-data.md).

A delete through the API drops the user's queued objects and erases their attribute state where the
sender stands, but a rejected-objects file cannot be edited there: it holds many users, and S3
objects are immutable. So once a day every file of the store is read, and the lines whose object
names a user with a tombstone accepted at or after the object (ties count, as the sender's verdict
drops them) are taken out (rejects.erase_lines, which also deletes the version read). A file with
nothing to take out is only read. No tombstone in the table, nothing is read.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from braze_forwarder import aws, rejects
from braze_forwarder.config import ErasureSettings
from braze_forwarder.observability import MetricUnit, logger, metrics
from braze_forwarder.user_order import HORIZON_DAYS, OrderRecord, OrderStore

Tombstones = dict[str, list[OrderRecord]]  # by user digest

# Files read at once: S3 GETs are round trips, and a file is small (one sender invocation's rejects).
READERS = 8


def tombstones_by_user(store: OrderStore, since: str | None = None) -> Tombstones:
    """Every tombstone accepted at or after `since` (default: all the table keeps), by user digest."""
    by_user: Tombstones = {}
    for record in store.records(max(since or "", horizon_start()), kinds=("delete",)):
        by_user.setdefault(record.user, []).append(record)
    return by_user


def horizon_start() -> str:
    """The oldest accept time a tombstone can still have (the table's TTL removes older ones)."""
    return iso(datetime.now(UTC) - timedelta(days=HORIZON_DAYS + 1))


def deleted_after(users: Iterable[str], accepted_at: str, found: Tombstones) -> OrderRecord | None:
    """The tombstone of one of these users accepted at or after `accepted_at` (ties count, as the
    sender's verdict drops them), or None. An accept time that cannot be read counts as the oldest."""
    moment = moment_of(accepted_at)
    for user in users:
        for tombstone in found.get(user, ()):
            if moment is None or moment <= (moment_of(tombstone.accepted_at) or moment):
                return tombstone
    return None


def accepted_before_delete(found: Tombstones) -> Callable[[Mapping[str, Any]], bool]:
    """The test `rejects.erase_lines` applies: a rejected record of a user deleted since its object
    was accepted."""

    def erase(record: Mapping[str, Any]) -> bool:
        return deleted_after(rejects.named_users(record), rejects.accepted_at(record), found) is not None

    return erase


@dataclass
class ErasureReport:
    tombstones: int = 0  # users with a tombstone
    files_read: int = 0
    files_left: int = 0  # not read before the time ran out: the next run reads them
    rewrites: list[rejects.Rewrite] = field(default_factory=list)  # the files that held erased lines

    @property
    def lines_removed(self) -> int:
        return sum(rewrite.removed for rewrite in self.rewrites)


def erase_deleted_users(
    s3: Any,
    bucket: str,
    store: OrderStore,
    *,
    dry_run: bool = False,
    seconds_left: Callable[[], float] | None = None,
    reserve_seconds: float = 30.0,
) -> ErasureReport:
    """Take every deleted user's lines out of the store; stop reading new files when fewer than
    `reserve_seconds` are left (the files not read are counted, and read by the next run)."""
    found = tombstones_by_user(store)
    report = ErasureReport(tombstones=len(found))
    if not found:
        return report
    erase = accepted_before_delete(found)
    keys = rejects.files(s3, bucket)
    lock = threading.Lock()

    def one(key: str) -> None:
        if seconds_left is not None and seconds_left() < reserve_seconds:
            with lock:
                report.files_left += 1
            return
        rewrite = rejects.erase_lines(s3, bucket, key, erase, dry_run=dry_run)
        with lock:
            report.files_read += 1
            if rewrite.removed:
                report.rewrites.append(rewrite)

    with concurrent.futures.ThreadPoolExecutor(READERS) as pool:
        for done in pool.map(one, keys):
            del done  # pool.map raises the first error here, after the files before it are done
    report.rewrites.sort(key=lambda rewrite: rewrite.key)
    return report


def scheduled_run(config: ErasureSettings, seconds_left: Callable[[], float]) -> dict[str, int]:
    """One daily run (RejectsEraserFunction): erase, then log and count what was done."""
    report = erase_deleted_users(
        aws.client("s3"),
        config.rejected_bucket,
        OrderStore(config.user_order_table),
        seconds_left=seconds_left,
        reserve_seconds=config.time_reserve_seconds,
    )
    summary = {
        "deleted_users": report.tombstones,
        "files_read": report.files_read,
        "files_rewritten": len(report.rewrites),
        "lines_erased": report.lines_removed,
        "files_left": report.files_left,
    }
    for name, value in (
        ("RejectedLinesErased", report.lines_removed),
        ("RejectedFilesRead", report.files_read),
        ("RejectedFilesLeft", report.files_left),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    # Keys and counts only: a file's key names its hour, never a user.
    files = [rewrite.key for rewrite in report.rewrites]
    logger.info("rejected objects of deleted users erased", extra={**summary, "files": files})
    if report.files_left:
        logger.warning("time ran out before every file was read: the next run reads them", extra=summary)
    return summary


def moment_of(text: str) -> datetime | None:
    """A time from ISO-8601 text, UTC unless it names its zone; None if it is not one."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def iso(moment: datetime) -> str:
    """As the order store writes accept times (ISO UTC, milliseconds): comparable as text."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
