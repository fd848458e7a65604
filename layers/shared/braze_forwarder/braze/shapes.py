"""The arrays of Braze's user-data endpoints, and the limits of their objects.

A module of its own, below validation: the sender and the rejected-objects store need these names
and numbers only, and loading validation (its reference tables and patterns) for them was ~10 ms of
the sender's cold start (`make bench`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Below 4, Braze's own $update shape (an object four levels down) could not be sent; and the walks
# skip shapes that are flat once valid, which is only sound when they fit. Above 500, json.dumps
# (used for exact sizes, and recursing once per level) could meet the interpreter's recursion limit.
_DEPTH_RANGE = range(4, 501)


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits that Braze documents in more than one way, or that we choose."""

    max_object_depth: int = 30
    """Levels below the object itself."""
    max_properties_bytes: int = 51_200
    """Event/purchase ``properties`` compact-JSON size (Braze: 50 KB is safe for both)."""
    max_nested_attribute_bytes: int = 102_400
    """One nested-object or array-of-objects custom attribute."""
    max_array_items: int = 500
    """Scalar array attribute length."""

    def __post_init__(self) -> None:
        for name in (
            "max_object_depth",
            "max_properties_bytes",
            "max_nested_attribute_bytes",
            "max_array_items",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer")
        if self.max_object_depth not in _DEPTH_RANGE:
            raise ValueError(f"Limits.max_object_depth must be from {_DEPTH_RANGE.start} to {_DEPTH_RANGE.stop - 1}")


DEFAULT_LIMITS = Limits()

TRACK_ARRAYS = ("attributes", "events", "purchases")
IDENTIFY_ARRAYS = ("aliases_to_identify", "emails_to_identify", "phone_numbers_to_identify")
# /users/delete takes exactly one of these per request; the other two routes one array each.
DELETE_ARRAYS = ("external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers")
ALIAS_ARRAYS = ("user_aliases",)
MERGE_ARRAYS = ("merge_updates",)
