"""The error a refused call raises: its gRPC code, the daemon's message and the stable
reason ferryd sends with the failures a client may act on (``google.rpc.ErrorInfo`` of
domain ``ferry.v1``)."""

from __future__ import annotations

from typing import Optional

import grpc

#: The ``domain`` of the ``ErrorInfo`` that carries ferry's reasons.
REASON_DOMAIN = "ferry.v1"


class FerryError(Exception):
    """A call ferryd refused or could not answer."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: Optional[str] = None):
        super().__init__(f"{message} ({code.name})")
        #: The gRPC status code, e.g. ``grpc.StatusCode.NOT_FOUND``.
        self.code = code
        #: What ferryd said: it names the call or field that was wrong.
        self.message = message
        #: A value name of the wire's ``ErrorReason`` without its prefix (e.g.
        #: ``"JOB_NOT_FOUND"``) or None. Act on this, not on the message's words.
        self.reason = reason

    @classmethod
    def from_rpc_error(cls, e: grpc.RpcError) -> "FerryError":
        """The error of a failed call."""
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
        message = e.details() if hasattr(e, "details") else str(e)
        return cls(code, message or "", _reason_of(e))

    @property
    def daemon_gone(self) -> bool:
        """The daemon is not running or went away (it shut down): try again later."""
        return self.code == grpc.StatusCode.UNAVAILABLE


def _reason_of(e: grpc.RpcError) -> Optional[str]:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(e)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == REASON_DOMAIN:
                return info.reason
    return None
