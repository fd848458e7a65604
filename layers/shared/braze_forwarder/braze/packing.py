"""Packing objects into as few Braze calls as the limits allow, keeping each user's order.

Calls go out in parallel, so two calls holding objects of the same user could be applied in
either order. Packing therefore keeps all of a user's objects in one call; only a user with more
objects than one call holds is split, into a chain of calls that are sent one after another
(`Call.after`). Users are placed first-fit into the open calls, which fills calls almost
completely for the usual mix of one to a few objects per user.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

TRACK_ARRAYS = ("attributes", "events", "purchases")
BatchMode = Literal["total", "per_array"]
# Open calls a new user may join. A small window keeps packing linear in the number of objects;
# with one to a few objects per user the calls it closes are already (nearly) full.
_OPEN_CALLS = 16
# JSON punctuation a call adds around its objects: braces, array names, commas.
_CALL_OVERHEAD_BYTES = 64

P = TypeVar("P", bound="Packable")


class Packable(Protocol):
    """What packing needs to know of an object: its user, its Braze array, its encoded size."""

    @property
    def user(self) -> Hashable: ...
    @property
    def array(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def object(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Limits:
    objects: int  # per call ("total") or per array ("per_array")
    mode: BatchMode = "total"
    max_bytes: int = 3_500_000  # Braze refuses bodies over 4 MB


@dataclass(eq=False)
class Call(Generic[P]):
    """One Braze request's worth of objects; `after` is the call that must succeed first, if any."""

    parcels: list[P] = field(default_factory=list)
    after: Call[P] | None = None
    count: int = 0
    per_array: dict[str, int] = field(default_factory=dict)
    size: int = _CALL_OVERHEAD_BYTES

    def fits(self, group: Sequence[P], limits: Limits) -> bool:
        if self.size + sum(p.size + 1 for p in group) > limits.max_bytes:
            return False
        if limits.mode == "total":
            return self.count + len(group) <= limits.objects
        added: dict[str, int] = {}
        for parcel in group:
            added[parcel.array] = added.get(parcel.array, 0) + 1
        return all(self.per_array.get(array, 0) + n <= limits.objects for array, n in added.items())

    def add(self, group: Sequence[P]) -> None:
        for parcel in group:
            self.parcels.append(parcel)
            self.count += 1
            self.per_array[parcel.array] = self.per_array.get(parcel.array, 0) + 1
            self.size += parcel.size + 1

    def is_full(self, limits: Limits) -> bool:
        return limits.mode == "total" and self.count >= limits.objects

    def body(self, arrays: Iterable[str] = TRACK_ARRAYS) -> dict[str, list[Any]]:
        """The request body: each array's objects in the order they were packed."""
        grouped: dict[str, list[Any]] = {array: [] for array in arrays}
        for parcel in self.parcels:
            grouped.setdefault(parcel.array, []).append(parcel.object)
        return {array: objects for array, objects in grouped.items() if objects}


def pack(parcels: Iterable[P], limits: Limits) -> list[Call[P]]:
    """Pack parcels (in arrival order) into calls; every parcel lands in exactly one call."""
    calls: list[Call[P]] = []
    open_calls: list[Call[P]] = []
    for group in _groups_by_user(parcels):
        empty: Call[P] = Call()
        if empty.fits(group, limits):
            target = next((call for call in open_calls if call.fits(group, limits)), None)
            if target is None:
                target = Call()
                calls.append(target)
                open_calls.append(target)
            target.add(group)
        else:
            target = _chain(group, limits, calls)
            open_calls.append(target)
        open_calls = [call for call in open_calls if not call.is_full(limits)][-_OPEN_CALLS:]
    return calls


def _groups_by_user(parcels: Iterable[P]) -> list[list[P]]:
    groups: dict[Hashable, list[P]] = {}
    for parcel in parcels:
        groups.setdefault(parcel.user, []).append(parcel)
    return list(groups.values())


def _chain(group: list[P], limits: Limits, calls: list[Call[P]]) -> Call[P]:
    """Split one user's objects over consecutive calls, each sent after the one before."""
    current: Call[P] = Call()
    calls.append(current)
    for parcel in group:
        if current.parcels and not current.fits([parcel], limits):
            current = Call(after=current)
            calls.append(current)
        current.add([parcel])
    return current


def user_key(obj: dict[str, Any]) -> Hashable:
    """Which Braze user an object updates, as far as its identifiers tell (BRAZE_API.md §2.2)."""
    external_id = obj.get("external_id")
    if external_id is not None:
        return ("external_id", external_id)
    alias = obj.get("user_alias")
    if isinstance(alias, dict):
        return ("user_alias", alias.get("alias_name"), alias.get("alias_label"))
    for identifier in ("braze_id", "email", "phone"):
        value = obj.get(identifier)
        if value is not None:
            return (identifier, value)
    return ("unidentified", id(obj))
