"""Python client of ferryd, ferry's background transfer daemon: jobs, callbacks over
the ``Connect`` stream, WQL queries and events. The gRPC stubs of the wire contract are
generated from ferry's ``proto/`` when the package is built; they are importable as
``ferry_client.pb`` (``ferry_client.pb.jobs_pb2`` …) for calls this layer does not wrap."""

from ._proto.ferry.v1 import (  # noqa: F401
    common_pb2,
    daemon_pb2,
    jobs_pb2,
    notifications_pb2,
    queries_pb2,
)
from ._proto.ferry import v1 as pb  # noqa: F401
from .callbacks import Callback, CallbackChannel
from .client import LENGTH_TO_EOF, Client, Job, negotiate_credentials
from .errors import FerryError
from .paths import socket_path
from .queries import AsyncCall, Enumerator, ObjectSink
from .types import CostState, FinalStatus, JobState, NotifyFlag, QueryObject, RedirectPolicy, StatusCode

__all__ = [
    "AsyncCall",
    "Callback",
    "CallbackChannel",
    "Client",
    "CostState",
    "Enumerator",
    "FerryError",
    "FinalStatus",
    "Job",
    "JobState",
    "LENGTH_TO_EOF",
    "NotifyFlag",
    "ObjectSink",
    "QueryObject",
    "RedirectPolicy",
    "StatusCode",
    "negotiate_credentials",
    "socket_path",
]
