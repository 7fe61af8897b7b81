"""WQL queries in WMI's three call models: synchronous (a list), semisynchronous (an
:class:`Enumerator` to iterate) and asynchronous (an :class:`ObjectSink` called from a
background thread, an :class:`AsyncCall` to wait for or cancel)."""

from __future__ import annotations

import threading
from typing import Iterator, List, Optional, Protocol

import grpc

from .errors import FerryError
from .types import FinalStatus, QueryObject, StatusCode


class ObjectSink(Protocol):
    """Receives the results of an asynchronous call (WMI's IWbemObjectSink). Calls for
    one call come in order, one at a time, from the call's thread: keep them short."""

    def indicate(self, objects: List[QueryObject]) -> None:
        """A batch of objects (for an event query: one event)."""

    def set_status(self, status: FinalStatus) -> None:
        """The one final status; nothing follows it."""


class Enumerator:
    """The results of a semisynchronous call: iterate it for the objects as they come.
    After the iteration, :attr:`status` holds how the call ended. A query ferryd refuses
    (malformed, or of the wrong kind) raises :class:`FerryError` when iterated."""

    def __init__(self, responses: "grpc.Future"):
        self._responses = responses
        self._pending: List[QueryObject] = []
        self._cancelled = False
        self._refusal: Optional[grpc.RpcError] = None
        #: How the call ended, once the iteration is over.
        self.status: Optional[FinalStatus] = None

    def __iter__(self) -> Iterator[QueryObject]:
        return self

    def __next__(self) -> QueryObject:
        while not self._pending:
            if self._refusal is not None:
                refusal, self._refusal = self._refusal, None
                raise FerryError.from_rpc_error(refusal)
            if self.status is not None:
                raise StopIteration
            self._pull()
        return self._pending.pop(0)

    def _pull(self) -> None:
        try:
            message = next(self._responses)
        except StopIteration:
            self.status = self.status or FinalStatus(StatusCode.FAILED, "the stream ended without a final status")
            return
        except grpc.RpcError as e:
            self.status = _status_of_stream_error(e, self._cancelled)
            if self.status.code == StatusCode.FAILED:
                self._refusal = e
            return
        kind = message.WhichOneof("kind")
        if kind == "batch":
            self._pending.extend(QueryObject.from_wire(o) for o in message.batch.objects)
        elif kind == "status":
            self.status = FinalStatus.from_wire(message.status)

    def cancel(self) -> None:
        """Stops the call on the daemon; the iteration ends with CALL_CANCELLED."""
        self._cancelled = True
        self._responses.cancel()


def _status_of_stream_error(e: grpc.RpcError, cancelled: bool) -> FinalStatus:
    code = e.code() if hasattr(e, "code") else None
    if code == grpc.StatusCode.CANCELLED and cancelled:
        return FinalStatus(StatusCode.CALL_CANCELLED, "the caller cancelled the call")
    if code == grpc.StatusCode.UNAVAILABLE:
        return FinalStatus(StatusCode.SHUTTING_DOWN, e.details() or "the daemon went away")
    return FinalStatus(StatusCode.FAILED, (e.details() if hasattr(e, "details") else str(e)) or str(code))


class AsyncCall:
    """A running asynchronous call: its sink receives the objects and then the final
    status, from a background thread."""

    def __init__(self, responses: "grpc.Future", sink: ObjectSink):
        self._enumerator = Enumerator(responses)
        self._sink = sink
        self._thread = threading.Thread(target=self._run, name="ferry-async-call", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        e = self._enumerator
        while e.status is None:
            e._pull()
            if e._pending:
                batch, e._pending = e._pending, []
                self._sink.indicate(batch)
        self._sink.set_status(e.status)

    def cancel(self) -> None:
        """Stops the call; the sink's final status is CALL_CANCELLED (unless it had
        already ended)."""
        self._enumerator.cancel()
        self.wait()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until the sink got its final status; False if ``timeout`` passed."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
