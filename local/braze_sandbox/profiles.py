"""User profiles and their lookup indexes: what Braze keeps of the calls it applied."""

import copy
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from local.braze_sandbox.rules import (
    CONTROL_GROUP_ATTRIBUTE,
    EXPORTED_PROFILE_FIELDS,
    HISTORY_LIMIT,
    RESERVED_ATTRIBUTES,
    SECONDARY_IDENTIFIERS,
)


@dataclass
class _Tally:
    """Summary of one custom event name or one product_id on a profile."""

    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    revenue: float = 0.0

    def record(self, when: datetime, count: int = 1, revenue: float = 0.0) -> None:
        self.count += count
        self.revenue = round(self.revenue + revenue, 6)
        self.first = when if self.first is None else min(self.first, when)
        self.last = when if self.last is None else max(self.last, when)

    def absorb(self, other: "_Tally") -> None:
        """§5 merge: counts summed, first = the earlier, last = the later."""
        if other.first is None or other.last is None:
            return
        self.record(other.first, other.count, other.revenue)
        self.last = max(self.last or other.last, other.last)  # record() only saw other's first

    def to_json(self, revenue: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"count": self.count, "first": _iso(self.first), "last": _iso(self.last)}
        if revenue:
            data["revenue"] = self.revenue
        return data


@dataclass
class _Profile:
    braze_id: str
    random_bucket: int
    created_at: datetime
    updated_at: datetime
    external_id: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # label → name: one alias per label (§6)
    attributes: dict[str, Any] = field(default_factory=dict)
    subscription_groups: dict[str, str] = field(default_factory=dict)
    push_tokens: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, _Tally] = field(default_factory=dict)
    purchases: dict[str, _Tally] = field(default_factory=dict)
    total_revenue: float = 0.0
    data_points: int = 0
    # What reached this profile, in order: {"seq", "at", "op", ...}; seq is the store's, shared with
    # the deletion and merge records, so a test can ask what arrived after a delete. The newest
    # HISTORY_LIMIT entries: a long `make run` keeps its memory bounded.
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_LIMIT))

    def key(self) -> str:
        if self.external_id is not None:
            return self.external_id
        if self.aliases:
            label, name = next(iter(self.aliases.items()))
            return f"alias:{name}:{label}"
        for contact in SECONDARY_IDENTIFIERS:
            if self.attributes.get(contact):
                return f"{contact}:{self.attributes[contact]}"
        return f"braze_id:{self.braze_id}"

    def in_control_group(self) -> bool:
        return self.attributes.get(CONTROL_GROUP_ATTRIBUTE) is True

    def to_json(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "braze_id": self.braze_id,
            "user_aliases": _alias_list(self.aliases),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "random_bucket": self.random_bucket,
            "attributes": copy.deepcopy(self.attributes),
            "subscription_groups": dict(self.subscription_groups),
            "push_tokens": copy.deepcopy(self.push_tokens),
            "custom_events": {name: tally.to_json(False) for name, tally in self.events.items()},
            "purchases": {product: tally.to_json(True) for product, tally in self.purchases.items()},
            "total_revenue": self.total_revenue,
            "data_points": self.data_points,
        }

    def export_object(self) -> dict[str, Any]:
        """The §7 per-user export object (every field the sandbox can fill)."""
        user: dict[str, Any] = {
            "created_at": self.created_at.strftime("%Y-%m-%d %H:%M:%S.")
            + f"{self.created_at.microsecond // 1000:03d} UTC",
            "braze_id": self.braze_id,
            "random_bucket": self.random_bucket,
        }
        if self.external_id is not None:
            user["external_id"] = self.external_id
        if self.aliases:
            user["user_aliases"] = _alias_list(self.aliases)
        for name in EXPORTED_PROFILE_FIELDS:
            if self.attributes.get(name) is not None:
                user[name] = copy.deepcopy(self.attributes[name])
        location = self.attributes.get("current_location")
        if isinstance(location, dict):
            user["last_coordinates"] = [location.get("longitude"), location.get("latitude")]  # §7 [lon, lat]
        custom = {k: v for k, v in self.attributes.items() if k not in RESERVED_ATTRIBUTES}
        if custom:
            user["custom_attributes"] = copy.deepcopy(custom)
        # The sandbox keeps all history; Braze limits custom_events/purchases to the last 90 days.
        if self.events:
            user["custom_events"] = [{"name": n, **t.to_json(False)} for n, t in self.events.items()]
        if self.purchases:
            user["purchases"] = [{"name": n, **t.to_json(False)} for n, t in self.purchases.items()]
            user["total_revenue"] = self.total_revenue
        return user


class _ProfileStore:
    """Profiles with lookup indexes. Not thread-safe on its own: the sandbox lock guards it."""

    def __init__(self, rng: random.Random):
        self.clear(rng)

    def clear(self, rng: random.Random) -> None:
        self._rng = rng
        self._profiles: dict[str, _Profile] = {}  # by braze_id
        self._by_external_id: dict[str, _Profile] = {}
        self._by_alias: dict[tuple[str, str], _Profile] = {}  # (alias_name, alias_label)
        self.data_points = 0
        self._seq = 0
        self.deletions: list[dict[str, Any]] = []  # /users/delete, one record per identifier
        self.merges: list[dict[str, Any]] = []  # /users/merge, one record per merge update

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def note(self, profile: _Profile, op: str, **detail: Any) -> None:
        """Append to the profile's history (see `_Profile.history`)."""
        profile.history.append({"seq": self.next_seq(), "at": _iso(_now()), "op": op, **detail})

    def __len__(self) -> int:
        return len(self._profiles)

    def all(self) -> list[_Profile]:
        return list(self._profiles.values())

    def by_external_id(self, external_id: str) -> _Profile | None:
        return self._by_external_id.get(external_id)

    def by_alias(self, name: str, label: str) -> _Profile | None:
        return self._by_alias.get((name, label))

    def by_contact(self, contact: str, value: str) -> list[_Profile]:
        return [p for p in self._profiles.values() if p.attributes.get(contact) == value]

    def charge(self, profile: _Profile, points: int) -> None:
        profile.data_points += points
        profile.updated_at = _now()
        self.data_points += points

    # -- /users/track identifier resolution (§2.2, §2.3) ------------------------------------------

    def resolve(self, obj: dict[str, Any], create_alias_profile: bool) -> _Profile | None:
        update_only = obj.get("_update_existing_only")
        if obj.get("external_id") is not None:
            found = self.by_external_id(obj["external_id"])
            if found is None and update_only is not True:  # created unless explicitly update-only
                found = self._create(external_id=obj["external_id"])
            return found
        if obj.get("user_alias") is not None:
            alias = obj["user_alias"]
            found = self.by_alias(alias["alias_name"], alias["alias_label"])
            # §2.3: alias objects only create a profile from attributes with the flag explicitly false.
            if found is None and create_alias_profile and update_only is False:
                found = self._create()
                self.add_alias(found, alias["alias_name"], alias["alias_label"])
            return found
        if obj.get("braze_id") is not None:
            return self._profiles.get(obj["braze_id"])  # braze_ids are Braze-assigned: never created
        if obj.get("push_token_import") is True:
            return self._create()  # §2.4: a temporary anonymous profile holding the token
        contact = "email" if obj.get("email") is not None else "phone"
        found = _preferred_contact_profile(self.by_contact(contact, obj[contact]))
        if found is None and update_only is not True:  # §2.2: Braze creates an email-only profile
            found = self._create()
            found.attributes[contact] = obj[contact]
        return found

    def _create(self, external_id: str | None = None) -> _Profile:
        now = _now()
        braze_id = f"{self._rng.getrandbits(96):024x}"
        profile = _Profile(braze_id=braze_id, random_bucket=self._rng.randrange(10000), created_at=now,
                           updated_at=now, external_id=external_id)  # fmt: skip
        self._profiles[braze_id] = profile
        if external_id is not None:
            self._by_external_id[external_id] = profile
        self.note(profile, "created", external_id=external_id)
        return profile

    def add_alias(self, profile: _Profile, name: str, label: str) -> None:
        profile.aliases[label] = name
        self._by_alias[(name, label)] = profile
        self.note(profile, "alias", alias_name=name, alias_label=label)

    # -- /users/alias/new (§6) --------------------------------------------------------------------

    def alias_new(self, entry: dict[str, Any]) -> str:
        """Add one new user alias; the outcome names what happened (all are "processed" to Braze)."""
        name, label = entry["alias_name"], entry["alias_label"]
        if self.by_alias(name, label) is not None:
            return "exists"  # the pair is unique across users: success, nothing changes
        if entry.get("external_id") is None:
            self.add_alias(self._create(), name, label)  # a new alias-only profile
            return "created"
        profile = self.by_external_id(entry["external_id"])
        if profile is None:
            return "no_such_user"  # "the alias will not be added to any users"
        if label in profile.aliases:
            return "label_taken"  # [inf] one alias_name per alias_label: /users/alias/update renames
        self.add_alias(profile, name, label)
        return "added"

    # -- identifiers as /users/delete and /users/merge name a user (§6) ---------------------------

    def find(self, kind: str, value: Any) -> list[_Profile]:
        """The profiles an identifier names: kind is external_id, user_alias, braze_id, email or phone
        (value then an {email|phone, prioritization} object). Several found → the caller does nothing."""
        if kind == "external_id":
            found = self.by_external_id(value)
        elif kind == "user_alias":
            found = self.by_alias(value["alias_name"], value["alias_label"])
        elif kind == "braze_id":
            found = self._profiles.get(value)
        else:
            return _prioritized(self.by_contact(kind, value[kind]), value["prioritization"])
        return [found] if found is not None else []

    # -- /users/delete (§6) -----------------------------------------------------------------------

    def delete(self, kind: str, value: Any) -> dict[str, Any]:
        """Delete the profile an identifier names (none, or several by email/phone: nothing happens)."""
        found = self.find(kind, value)
        record: dict[str, Any] = {"seq": self.next_seq(), "at": _iso(_now()), "identifier_type": kind,
                                  "identifier": copy.deepcopy(value), "found": len(found)}  # fmt: skip
        if len(found) == 1:
            profile = found[0]
            record.update(braze_id=profile.braze_id, external_id=profile.external_id,
                          user_aliases=_alias_list(profile.aliases),
                          history=copy.deepcopy(list(profile.history)))  # fmt: skip
            self._forget(profile)
        self.deletions.append(record)
        return record

    def _forget(self, profile: _Profile) -> None:
        """The profile is gone: a later /users/track for any of its identifiers starts a new one."""
        del self._profiles[profile.braze_id]
        if profile.external_id is not None and self._by_external_id.get(profile.external_id) is profile:
            del self._by_external_id[profile.external_id]
        for label, name in profile.aliases.items():
            if self._by_alias.get((name, label)) is profile:
                del self._by_alias[(name, label)]

    # -- /users/merge (§6) ------------------------------------------------------------------------

    def merge_users(self, to_merge: tuple[str, Any], to_keep: tuple[str, Any]) -> dict[str, Any]:
        """Merge one profile into another: only fields missing on the kept profile are copied."""
        record: dict[str, Any] = {"seq": self.next_seq(), "at": _iso(_now()),
                                  "identifier_to_merge": _identifier_json(*to_merge),
                                  "identifier_to_keep": _identifier_json(*to_keep)}  # fmt: skip
        merged, kept = self.find(*to_merge), self.find(*to_keep)
        if len(merged) != 1 or len(kept) != 1:
            # "if more than one user matches from a prioritization, then merging will not occur"
            record["outcome"] = "not_found" if not merged or not kept else "ambiguous"
        elif merged[0] is kept[0]:
            record["outcome"] = "same_profile"
        elif merged[0].in_control_group() or kept[0].in_control_group():
            record["outcome"] = "control_group"  # merge behaviour page: GCG users are not merged
        else:
            orphan, target = merged[0], kept[0]
            record.update(outcome="merged", merged_braze_id=orphan.braze_id, kept_braze_id=target.braze_id,
                          merged_external_id=orphan.external_id, kept_external_id=target.external_id,
                          copied=_copy_missing(orphan, target))  # fmt: skip
            self.note(target, "merged_in", braze_id=orphan.braze_id, external_id=orphan.external_id)
            record["merged_history"] = copy.deepcopy(list(orphan.history))
            self._forget(orphan)
        self.merges.append(record)
        return record

    # -- /users/identify (§5) ---------------------------------------------------------------------

    def identify(self, array: str, entry: dict[str, Any]) -> None:
        external_id = entry["external_id"]
        if array == "aliases_to_identify":
            alias = entry["user_alias"]
            # §5: alias_name is case-sensitive; an unknown alias silently does nothing.
            orphan = self.by_alias(alias["alias_name"], alias["alias_label"])
        else:
            contact = "email" if array == "emails_to_identify" else "phone"
            candidates = _prioritized(self.by_contact(contact, entry[contact]), entry["prioritization"])
            # §5: if more than one user still matches, no merge happens.
            orphan = candidates[0] if len(candidates) == 1 else None
        if orphan is None or orphan.external_id is not None:
            return  # [inf] already identified profiles are left alone
        self._identify_profile(orphan, external_id)

    def _identify_profile(self, orphan: _Profile, external_id: str) -> None:
        target = self.by_external_id(external_id)
        if target is None:  # §5: the external_id is written onto the unidentified profile
            orphan.external_id = external_id
            orphan.updated_at = _now()
            self._by_external_id[external_id] = orphan
            self.note(orphan, "identified", external_id=external_id)
            return
        if set(orphan.aliases) & set(target.aliases):
            return  # §5: the target already holds an alias with the same label: not combined
        self._merge(orphan, target)

    def _merge(self, orphan: _Profile, target: _Profile) -> None:
        # §5: fields only on the orphan are copied; event/purchase data combined; orphan removed.
        for name, value in orphan.attributes.items():
            target.attributes.setdefault(name, value)
        for group, state in orphan.subscription_groups.items():
            target.subscription_groups.setdefault(group, state)
        known_tokens = {token.get("token") for token in target.push_tokens}
        target.push_tokens.extend(t for t in orphan.push_tokens if t.get("token") not in known_tokens)
        for mine, theirs in ((target.events, orphan.events), (target.purchases, orphan.purchases)):
            for name, tally in theirs.items():
                mine.setdefault(name, _Tally()).absorb(tally)
        target.total_revenue = round(target.total_revenue + orphan.total_revenue, 6)
        target.data_points += orphan.data_points
        target.updated_at = _now()
        self.note(target, "identified_from", braze_id=orphan.braze_id)
        for label, name in orphan.aliases.items():
            self.add_alias(target, name, label)
        del self._profiles[orphan.braze_id]


def _identifier_json(kind: str, value: Any) -> dict[str, Any]:
    """The identifier as the request gave it (email and phone values are already that object)."""
    return copy.deepcopy(value if kind in SECONDARY_IDENTIFIERS else {kind: value})


def _copy_missing(orphan: _Profile, target: _Profile) -> list[str]:
    """/users/merge: attributes (standard and custom) and devices only where the target has none;
    event and purchase summaries combined. Aliases, external_id and subscription groups are not in
    Braze's list of merged fields: they go with the merged profile. Returns the attributes copied."""
    copied = [name for name in orphan.attributes if target.attributes.get(name) is None]
    for name in copied:
        target.attributes[name] = copy.deepcopy(orphan.attributes[name])
    known_tokens = {token.get("token") for token in target.push_tokens}
    target.push_tokens.extend(copy.deepcopy(t) for t in orphan.push_tokens if t.get("token") not in known_tokens)
    for mine, theirs in ((target.events, orphan.events), (target.purchases, orphan.purchases)):
        for name, tally in theirs.items():
            mine.setdefault(name, _Tally()).absorb(tally)
    target.total_revenue = round(target.total_revenue + orphan.total_revenue, 6)
    target.updated_at = _now()
    return copied


def _preferred_contact_profile(candidates: list[_Profile]) -> _Profile | None:
    # §2.2: several profiles share the email → the most recently updated one with an external_id,
    # else the most recently updated one.
    identified = [p for p in candidates if p.external_id is not None]
    pool = identified or candidates
    return max(pool, key=lambda p: p.updated_at) if pool else None


def _prioritized(candidates: list[_Profile], prioritization: list[str]) -> list[_Profile]:
    for rule in prioritization:
        if rule == "identified":
            candidates = [p for p in candidates if p.external_id is not None]
        elif rule == "unidentified":
            candidates = [p for p in candidates if p.external_id is None]
        elif rule == "most_recently_updated" and candidates:
            candidates = [max(candidates, key=lambda p: p.updated_at)]
        elif rule == "least_recently_updated" and candidates:
            candidates = [min(candidates, key=lambda p: p.updated_at)]
    return candidates


def _alias_list(aliases: dict[str, str]) -> list[dict[str, str]]:
    return [{"alias_name": name, "alias_label": label} for label, name in aliases.items()]


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
