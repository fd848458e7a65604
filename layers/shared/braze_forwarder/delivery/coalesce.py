"""Coalescing one batch's attributes objects: each user's updates folded into as few objects as their
meaning allows, so Braze bills the final values once instead of every intermediate one.

A user's objects are taken in arrival order (the time the API received them; SQS may hand over an
older message later in the batch, and an older value must not win) and folded into the user's last
output object while that keeps the result on the profile the same as applying them one by one
(BRAZE_API.md §2.4, §2.5):

- a later plain value (scalar, null, whole array, nested object without `_merge_objects`) replaces
  an earlier value of the same attribute, whatever that was;
- `{"inc": a}` then `{"inc": b}` is `{"inc": a + b}`; a number then `{"inc": b}` is the number + b;
- nested objects sent with `_merge_objects: true` are deep-merged as Braze merges them, as long as
  that is associative (a later object where an earlier one held a non-object is not);
- anything else on the same attribute (`add`/`remove`, `$add`/`$remove`/`$update`, `inc` after a
  non-number, `subscription_groups`, `push_tokens`) is a conflict, and so are a different identifier
  or `_update_existing_only`, and a different `_merge_objects` where it changes the meaning.

A conflict starts a new output object (sent after the previous one, in the same call), never a
partial fold. Then, within a run of one user's objects with the same identifiers, an attribute that a
later object sets to a plain value is dropped from the earlier objects: it would be overwritten
anyway. Token imports (`push_token_import: true`) and unidentified objects are never folded; they
also end a run. The result is pure data: `Fold`s naming their member items.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from braze_forwarder.braze.datapoints import CONTROL_KEYS, is_plain, operation
from braze_forwarder.braze.shapes import DEFAULT_LIMITS

PRIMARY_IDENTIFIERS = ("external_id", "user_alias", "braze_id")
FLAGS = ("_update_existing_only", "push_token_import")
# Attributes whose repeated writes do not replace each other: subscription groups update one group
# each, push tokens are added to the known ones.
ACCUMULATING = frozenset({"subscription_groups", "push_tokens"})
# A folded object is one object of a Braze call (3.5 MB at most); objects this large are rare, and
# a bound keeps a merged one far from the call's limit.
MAX_FOLD_BYTES = 256 * 1024
# Braze caps one nested attribute (§2.5); a merge of two valid ones must stay valid.
MAX_NESTED_BYTES = DEFAULT_LIMITS.max_nested_attribute_bytes
# Braze's integers are 64-bit; a sum that leaves that range is not folded.
_INT_RANGE = range(-(2**63), 2**63)


class Item(NamedTuple):
    """One attributes object of the batch."""

    object: dict[str, Any]
    time: int | None  # when the API received it, epoch milliseconds (None: unknown)
    size: int  # compact JSON bytes


@dataclass(eq=False)
class Fold:
    """One output object: the items it stands for and what it sends.

    `object()` is what goes to Braze, or None when every attribute it had is sent by a later object
    of the same user (then nothing needs sending for its members).
    """

    members: list[int]  # indices into the items, in arrival order
    source: dict[str, Any]  # the first member's object
    identity: dict[str, Any] | None  # identifiers and flags; None: never folded (token import, unidentified)
    values: dict[str, Any] = field(default_factory=dict)
    times: dict[str, int | None] = field(default_factory=dict)  # per attribute: the newest write's time
    merge_objects: bool | None = None  # the `_merge_objects` the values need; None: none of them cares
    size: int = 0
    superseded: bool = False  # an attribute was dropped because a later object sets it

    def object(self) -> dict[str, Any] | None:
        if self.identity is None or (len(self.members) == 1 and not self.superseded):
            return self.source
        if self.superseded and not self.values:
            return None  # a later object of the same run sets all it had, and creates the profile as well
        built = dict(self.identity)
        if self.merge_objects:
            built["_merge_objects"] = True
        built.update(self.values)
        return built


def identity(obj: dict[str, Any]) -> dict[str, Any] | None:
    """Whom the object is about and how Braze looks them up; None when it is not to be folded.

    A primary identifier when there is one; else `email`, else `phone` (BRAZE_API.md §2.2: then they
    identify). Token imports create an anonymous profile per token and are never folded.
    """
    if obj.get("push_token_import") is True:
        return None
    found = {key: obj[key] for key in PRIMARY_IDENTIFIERS if key in obj}
    if not found:
        contact = next((key for key in ("email", "phone") if obj.get(key) is not None), None)
        if contact is None:
            return None
        found[contact] = obj[contact]
    for key in FLAGS:
        if key in obj:
            found[key] = obj[key]
    return found


def same_user(first: dict[str, Any] | None, second: dict[str, Any] | None) -> bool:
    """Whether two identities (see `identity`) name the same user and Braze treats them alike."""
    return first is not None and second is not None and _lookup(first) == _lookup(second)


def _lookup(ident: dict[str, Any]) -> dict[str, Any]:
    # _update_existing_only absent means "create" for external_id, email and phone, but "update only"
    # for user_alias (BRAZE_API.md §2.3); push_token_import false is no flag at all.
    flag = ident.get("_update_existing_only")
    creates = flag is False if "user_alias" in ident else flag is not True
    found = {key: value for key, value in ident.items() if key not in FLAGS}
    found["creates"] = creates
    return found


def coalesce(items: Sequence[Item], users: Sequence[Hashable]) -> list[Fold]:
    """Fold a batch's attributes objects; `users[i]` is item i's user (braze.packing.user_key).

    The folds come in the order their users first appear in the batch, each user's folds in arrival
    order; every item is a member of exactly one fold.
    """
    by_user: dict[Hashable, list[int]] = {}
    for index, user in enumerate(users):
        by_user.setdefault(user, []).append(index)
    folds: list[Fold] = []
    for indices in by_user.values():
        user_folds: list[Fold] = []
        for index in _arrival_order(indices, items):
            item = items[index]
            if not (user_folds and _fold_into(user_folds[-1], index, item)):
                user_folds.append(_start(index, item))
        _drop_superseded(user_folds)
        folds.extend(user_folds)
    return folds


def _arrival_order(indices: list[int], items: Sequence[Item]) -> list[int]:
    # Stable: objects received at the same time keep their order in the batch (and in the request).
    if any(items[i].time is None for i in indices):
        return indices  # times that cannot be compared: the batch's order is all there is
    # No time is None here (the any() above), which mypy cannot see: hence the ignore.
    return sorted(indices, key=lambda i: items[i].time)  # type: ignore[arg-type, return-value]


def _start(index: int, item: Item) -> Fold:
    fold = Fold(members=[index], source=item.object, identity=identity(item.object), size=item.size)
    if fold.identity is not None:
        flag = item.object.get("_merge_objects") is True
        for name, value in _attributes(item.object, fold.identity):
            fold.values[name] = value
            fold.times[name] = item.time
            if _flag_sensitive(value):
                fold.merge_objects = flag
    return fold


def _fold_into(fold: Fold, index: int, item: Item) -> bool:
    """Fold the item into the fold if meaning allows, all or nothing; return whether it did."""
    obj = item.object
    if fold.identity is None or fold.size + item.size > MAX_FOLD_BYTES:
        return False
    if not same_user(identity(obj), fold.identity):
        return False
    flag = obj.get("_merge_objects") is True
    attributes = list(_attributes(obj, fold.identity))
    sensitive = any(_flag_sensitive(value) for _, value in attributes)
    if sensitive and fold.merge_objects is not None and fold.merge_objects != flag:
        return False  # one object has one _merge_objects: the values would change meaning
    folded: dict[str, Any] = {}
    for name, value in attributes:
        if name in fold.values:
            result = _fold_value(name, fold.values[name], value, flag)
            if result is _CONFLICT:
                return False
            folded[name] = result
        else:
            folded[name] = value
    for name, value in folded.items():
        fold.values[name] = value
        fold.times[name] = item.time
    if sensitive:
        fold.merge_objects = flag
    fold.members.append(index)
    fold.size += item.size
    return True


def _attributes(obj: dict[str, Any], ident: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(name, value) for name, value in obj.items() if name not in ident and name not in CONTROL_KEYS]


def _flag_sensitive(value: Any) -> bool:
    """Whether `_merge_objects` changes what this value does: nested objects and `$update`."""
    if type(value) is not dict:
        return False
    kind = operation(value)
    return kind is None or (kind == "object_array" and "$update" in value)


class _Conflict:
    pass


_CONFLICT = _Conflict()


def _fold_value(name: str, earlier: Any, later: Any, merge_objects: bool) -> Any:
    """One value that applies like `earlier` then `later`, or _CONFLICT."""
    if name in ACCUMULATING:
        return _CONFLICT
    if is_plain(later, merge_objects):
        return later
    kind = operation(later)
    if kind == "inc":
        amount = later["inc"]
        if type(amount) is not int:
            return _CONFLICT
        if operation(earlier) == "inc" and type(earlier["inc"]) is int:
            total = earlier["inc"] + amount
            return {"inc": total} if total in _INT_RANGE else _CONFLICT
        if type(earlier) is int:
            total = earlier + amount
            return total if total in _INT_RANGE else _CONFLICT
        if type(earlier) is float:
            return earlier + amount  # what Braze computes: the stored float plus the increment
        return _CONFLICT  # null, a string, an array… : Braze's answer is not ours to guess
    if kind is None and type(earlier) is dict and operation(earlier) is None:
        merged = _merge(earlier, later)
        if merged is _CONFLICT or _json_size(merged) > MAX_NESTED_BYTES:
            return _CONFLICT
        return merged
    return _CONFLICT  # array operations keep their order; they are never folded


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> Any:
    """Braze's deep merge of `patch` into `base`, when merging them first changes nothing.

    merge(merge(profile, base), patch) equals merge(profile, merge(base, patch)) unless `patch` holds
    an object where `base` holds something else: applied one by one the object replaces that value,
    merged first it would be merged into the profile's. Dates ({"$time": ...}) are kept whole.
    """
    if "$time" in base or "$time" in patch:
        return _CONFLICT
    merged = dict(base)
    for key, value in patch.items():
        if type(value) is dict and key in base:
            if type(base[key]) is not dict:
                return _CONFLICT
            value = _merge(base[key], value)
            if value is _CONFLICT:
                return _CONFLICT
        merged[key] = value
    return merged


def _drop_superseded(folds: list[Fold]) -> None:
    """Drop from earlier folds the attributes a later fold of the same run sets to a plain value."""
    replaced: set[str] = set()
    run_identity: dict[str, Any] | None = None
    for fold in reversed(folds):
        if not same_user(fold.identity, run_identity):
            replaced = set()
            run_identity = fold.identity
            if fold.identity is None:
                continue
        for name in [name for name in fold.values if name in replaced]:
            del fold.values[name]
            del fold.times[name]
            fold.superseded = True
        flag = bool(fold.merge_objects)
        replaced.update(
            name for name, value in fold.values.items() if name not in ACCUMULATING and is_plain(value, flag)
        )


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=True, separators=(",", ":")))
