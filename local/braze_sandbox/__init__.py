"""A local stand-in for Braze's REST API, served over real HTTP on loopback.

Two uses:

* integration tests of the sender script it (`BrazeSandbox.script`) to answer anything, and inspect
  the requests it received (`BrazeSandbox.requests`);
* the local stack (`make run`) and the soak test run it as a realistic Braze: limits, per-object
  validation, rate-limit headers and 429s, the global-control-group export with files and callback,
  and random faults (500, 429, dropped connections, timeouts) at configurable rates.

It keeps the resulting user profiles (attributes, event and purchase tallies, aliases, data points,
each profile's history) and the deletions and merges, so that what the forwarder did can be looked
at, in Python (`profile`, `history`, `deletions`, `merges`, `since_deletion`) or over
`GET /sandbox/users/...`, `/sandbox/deletions`, `/sandbox/merges`.

This is a model of Braze written from /work/shared/BRAZE_API.md (section numbers "§n" below refer
to it), deliberately independent of the forwarder's own validator: sharing that code would make the
sandbox agree with the forwarder's mistakes. Where Braze documents no error code for a rule, the
sandbox uses a code of its own in Braze's `BAD_*` style (see `SANDBOX_ERROR_TYPES`).

Run in the foreground:  python -m local.braze_sandbox --port 8181 --error-rate 0.05

The package, one module per area (each Braze route a module of its own, beside the others):

    core.py            BrazeSandbox: lifecycle, and the order in which a Braze route answers
    config.py          SandboxConfig, RecordedRequest
    users_track.py     POST /users/track: request limits, per-object validation
    users_identify.py  POST /users/identify
    users_delete.py    POST /users/delete
    users_alias.py     POST /users/alias/new
    users_merge.py     POST /users/merge
    writes.py          applying /users/track objects to a profile; data points (§10)
    profiles.py        profiles and the store that finds, creates and merges them
    exports.py         POST /users/export/global_control_group: files and callback
    faults.py          injected 500s, 429s, stalls and dropped connections
    scripts.py         ScriptedResponse: answers a test queues
    inspection.py      what tests and the demo read back; the /sandbox/* routes; stats
    rate_limit.py      the fixed windows (track; the identify/alias/merge/delete family) and headers (§2.9, §4)
    answers.py         an answer and Braze's usual bodies
    checks.py          value checks shared by the routes
    rules.py           Braze's numbers and names
    server.py          HTTP plumbing
    cli.py             the command line

A new route (e.g. /users/alias/update) is a module like users_delete.py: a mixin with the route method,
its validation beside it, the mixin added to BrazeSandbox's bases and the path to its routes.
"""

from local.braze_sandbox.cli import main
from local.braze_sandbox.config import RecordedRequest, SandboxConfig
from local.braze_sandbox.core import BrazeSandbox
from local.braze_sandbox.exports import CallbackRecord, ExportRecord
from local.braze_sandbox.profiles import _ProfileStore
from local.braze_sandbox.rules import (
    ALIAS_NEW_PATH,
    BRAZE_ERROR_TYPES,
    CONTROL_GROUP_ATTRIBUTE,
    CONTROL_KEYS,
    DEFAULT_GCG_SEGMENT_ID,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DELETE_ARRAYS,
    DELETE_PATH,
    EVENT_PROPERTIES_MAX_BYTES,
    EXPORT_OUTPUT_FORMATS,
    EXPORTED_PROFILE_FIELDS,
    FREE_ATTRIBUTES,
    GCG_EXPORT_FIELDS,
    GCG_EXPORT_PATH,
    IDENTIFY_ARRAYS,
    IDENTIFY_PATH,
    MAX_EXTERNAL_ID_BYTES,
    MAX_NAME_CHARS,
    MAX_PURCHASE_QUANTITY,
    MERGE_PATH,
    PRIMARY_IDENTIFIERS,
    PRIORITIZATION_VALUES,
    PURCHASE_PROPERTIES_MAX_BYTES,
    RATE_LIMIT_HEADER_CHOICES,
    RATE_LIMIT_HEADER_ROTATION,
    RATE_LIMIT_HEADER_STYLES,
    RESERVED_ATTRIBUTES,
    RESERVED_PROPERTY_KEYS,
    SANDBOX_ERROR_TYPES,
    SECONDARY_IDENTIFIERS,
    SUBSCRIPTION_GROUP_STATES,
    SUBSCRIPTION_STATES,
    TRACK_ARRAYS,
    TRACK_BATCH_MODES,
    TRACK_PATH,
    USER_DATA_FAMILY_PATHS,
)
from local.braze_sandbox.scripts import ScriptedResponse
from local.braze_sandbox.users_track import _validate_track_object
from local.braze_sandbox.writes import _apply_attributes, _attribute_data_points

# The private names are the sandbox's model that tests/unit (test_coalesce, test_datapoints) compare against.
__all__ = [
    "ALIAS_NEW_PATH",
    "BRAZE_ERROR_TYPES",
    "CONTROL_GROUP_ATTRIBUTE",
    "CONTROL_KEYS",
    "DEFAULT_GCG_SEGMENT_ID",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DELETE_ARRAYS",
    "DELETE_PATH",
    "EVENT_PROPERTIES_MAX_BYTES",
    "EXPORTED_PROFILE_FIELDS",
    "EXPORT_OUTPUT_FORMATS",
    "FREE_ATTRIBUTES",
    "GCG_EXPORT_FIELDS",
    "GCG_EXPORT_PATH",
    "IDENTIFY_ARRAYS",
    "IDENTIFY_PATH",
    "MAX_EXTERNAL_ID_BYTES",
    "MAX_NAME_CHARS",
    "MAX_PURCHASE_QUANTITY",
    "MERGE_PATH",
    "PRIMARY_IDENTIFIERS",
    "PRIORITIZATION_VALUES",
    "PURCHASE_PROPERTIES_MAX_BYTES",
    "RATE_LIMIT_HEADER_CHOICES",
    "RATE_LIMIT_HEADER_ROTATION",
    "RATE_LIMIT_HEADER_STYLES",
    "RESERVED_ATTRIBUTES",
    "RESERVED_PROPERTY_KEYS",
    "SANDBOX_ERROR_TYPES",
    "SECONDARY_IDENTIFIERS",
    "SUBSCRIPTION_GROUP_STATES",
    "SUBSCRIPTION_STATES",
    "TRACK_ARRAYS",
    "TRACK_BATCH_MODES",
    "TRACK_PATH",
    "USER_DATA_FAMILY_PATHS",
    "BrazeSandbox",
    "CallbackRecord",
    "ExportRecord",
    "RecordedRequest",
    "SandboxConfig",
    "ScriptedResponse",
    "_ProfileStore",
    "_apply_attributes",
    "_attribute_data_points",
    "_validate_track_object",
    "main",
]
