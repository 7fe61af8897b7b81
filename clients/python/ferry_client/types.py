"""The enums and flags of the wire as Python enums, and query objects as plain values."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ._proto.ferry.v1 import common_pb2, queries_pb2


class JobState(enum.IntEnum):
    """The state of a job (BITS's BG_JOB_STATE_*)."""

    SUSPENDED = common_pb2.JOB_STATE_SUSPENDED
    QUEUED = common_pb2.JOB_STATE_QUEUED
    CONNECTING = common_pb2.JOB_STATE_CONNECTING
    TRANSFERRING = common_pb2.JOB_STATE_TRANSFERRING
    TRANSIENT_ERROR = common_pb2.JOB_STATE_TRANSIENT_ERROR
    ERROR = common_pb2.JOB_STATE_ERROR
    TRANSFERRED = common_pb2.JOB_STATE_TRANSFERRED
    ACKNOWLEDGED = common_pb2.JOB_STATE_ACKNOWLEDGED
    CANCELLED = common_pb2.JOB_STATE_CANCELLED

    @property
    def is_final(self) -> bool:
        """Acknowledged or cancelled: nothing changes the job any more."""
        return self in (JobState.ACKNOWLEDGED, JobState.CANCELLED)


class RedirectPolicy(enum.IntEnum):
    """What a job does when a server redirects it (BITS's BG_HTTP_REDIRECT_POLICY_*)."""

    ALLOW_SILENT = common_pb2.REDIRECT_POLICY_ALLOW_SILENT
    ALLOW_REPORT = common_pb2.REDIRECT_POLICY_ALLOW_REPORT
    DISALLOW = common_pb2.REDIRECT_POLICY_DISALLOW
    NO_HTTPS_TO_HTTP = common_pb2.REDIRECT_POLICY_NO_HTTPS_TO_HTTP


class NotifyFlag(enum.IntFlag):
    """The bits of a job's notify flags (BITS's BG_NOTIFY_*)."""

    JOB_TRANSFERRED = common_pb2.NOTIFY_FLAG_JOB_TRANSFERRED
    JOB_ERROR = common_pb2.NOTIFY_FLAG_JOB_ERROR
    DISABLE = common_pb2.NOTIFY_FLAG_DISABLE
    JOB_MODIFICATION = common_pb2.NOTIFY_FLAG_JOB_MODIFICATION
    FILE_TRANSFERRED = common_pb2.NOTIFY_FLAG_FILE_TRANSFERRED
    FILE_RANGES_TRANSFERRED = common_pb2.NOTIFY_FLAG_FILE_RANGES_TRANSFERRED


class CostState(enum.IntFlag):
    """BITS's cost states (BITS_COST_STATE_*), as bits: a job's ``cost_flags`` are an OR of
    them (the states of the network it transfers in; BITS_JOB_PROPERTY_ID_COST_FLAGS), the
    daemon's ``network_cost_state`` is one. The ``TRANSFER_*`` members are BITS's presets
    (without BITS_COST_OPTION_IGNORE_CONGESTION, which is the job's ``ignore_congestion``
    here). Linux reports only UNRESTRICTED, CAPPED_USAGE_UNKNOWN (metered) and ROAMING."""

    UNRESTRICTED = common_pb2.COST_STATE_UNRESTRICTED
    CAPPED_USAGE_UNKNOWN = common_pb2.COST_STATE_CAPPED_USAGE_UNKNOWN
    BELOW_CAP = common_pb2.COST_STATE_BELOW_CAP
    NEAR_CAP = common_pb2.COST_STATE_NEAR_CAP
    OVERCAP_CHARGED = common_pb2.COST_STATE_OVERCAP_CHARGED
    OVERCAP_THROTTLED = common_pb2.COST_STATE_OVERCAP_THROTTLED
    USAGE_BASED = common_pb2.COST_STATE_USAGE_BASED
    ROAMING = common_pb2.COST_STATE_ROAMING
    #: BITS_COST_STATE_TRANSFER_ALWAYS: every state.
    TRANSFER_ALWAYS = 0xFF
    #: BITS_COST_STATE_TRANSFER_NOT_ROAMING: every state but roaming.
    TRANSFER_NOT_ROAMING = 0x7F
    #: BITS_COST_STATE_TRANSFER_NO_SURCHARGE: not roaming, not charged over the cap.
    TRANSFER_NO_SURCHARGE = 0x6F
    #: BITS_COST_STATE_TRANSFER_STANDARD: not roaming, not near or over the cap.
    TRANSFER_STANDARD = 0x67
    #: BITS_COST_STATE_TRANSFER_UNRESTRICTED: no cost at all (or throttled over the cap).
    TRANSFER_UNRESTRICTED = 0x21


class StatusCode(enum.Enum):
    """How a query ended."""

    #: Every object was delivered.
    OK = "ok"
    #: The call failed; the message says why.
    FAILED = "failed"
    #: The caller cancelled it.
    CALL_CANCELLED = "call_cancelled"
    #: An event subscriber fell behind; the subscription ended (never a silent gap).
    EVENTS_DROPPED = "events_dropped"
    #: The daemon went away (it shut down, the stream ended with UNAVAILABLE).
    SHUTTING_DOWN = "shutting_down"


_WIRE_STATUS = {
    queries_pb2.FINAL_STATUS_CODE_OK: StatusCode.OK,
    queries_pb2.FINAL_STATUS_CODE_FAILED: StatusCode.FAILED,
    queries_pb2.FINAL_STATUS_CODE_CALL_CANCELLED: StatusCode.CALL_CANCELLED,
    queries_pb2.FINAL_STATUS_CODE_EVENTS_DROPPED: StatusCode.EVENTS_DROPPED,
}


@dataclass(frozen=True)
class FinalStatus:
    """The final status of a query."""

    code: StatusCode
    message: str = ""

    @classmethod
    def from_wire(cls, s: "queries_pb2.FinalStatus") -> "FinalStatus":
        return cls(_WIRE_STATUS.get(s.code, StatusCode.FAILED), s.message)


@dataclass
class QueryObject:
    """An object a query returned (a Job, File or Handler, or an event), its properties
    as Python values (None for NULL, a QueryObject for an embedded object)."""

    class_name: str
    properties: Dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.properties[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.properties.get(name, default)

    @classmethod
    def from_wire(cls, o: "queries_pb2.Object") -> "QueryObject":
        return cls(o.class_name, {p.name: _value(p.value) for p in o.properties})


def _value(v: "queries_pb2.Value") -> Optional[Any]:
    kind = v.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "object_value":
        return QueryObject.from_wire(v.object_value)
    if kind == "string_list_value":
        return list(v.string_list_value.values)
    return getattr(v, kind)
