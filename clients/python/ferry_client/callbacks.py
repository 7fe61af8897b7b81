"""Callback objects over one ``Connect`` stream (BITS's IBackgroundCopyCallback2).

The rules are BITS's: ferryd calls a method only for the events the job's notify flags
select; calls for one job come in order, one at a time; a method that raises fails the
call, and ferryd tries again after the job's minimum retry delay (or runs the job's
notify command, if it has one); a method may call back into ferry (e.g. complete the
job). When the process or the stream ends, ferryd forgets its objects."""

from __future__ import annotations

import itertools
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Dict, Optional

from ._proto.ferry.v1 import common_pb2, notifications_pb2 as npb

if TYPE_CHECKING:
    from .client import Client, Job


class Callback:
    """Subclass it and override the methods you need; the others do nothing and
    succeed. ``job`` is a :class:`~ferry_client.Job`, ``info`` the job as a
    ``ferry.v1.Job`` message, ``file`` a ``ferry.v1.File`` message."""

    def job_transferred(self, job: "Job", info: common_pb2.Job) -> None:
        """Every file is transferred (flag JOB_TRANSFERRED)."""

    def job_error(self, job: "Job", info: common_pb2.Job) -> None:
        """The job entered the error state (flag JOB_ERROR); ``info.error`` says why."""

    def job_modification(self, job: "Job", info: common_pb2.Job) -> None:
        """The job changed state or made progress (flag JOB_MODIFICATION)."""

    def file_transferred(self, job: "Job", file: common_pb2.File) -> None:
        """A file is transferred (flag FILE_TRANSFERRED): judge its bytes at
        ``file.temporary_path`` with :meth:`Job.set_validation_state`."""

    def file_ranges_transferred(self, job: "Job", file: common_pb2.File, ranges: "list[tuple[int, int]]") -> None:
        """Ranges of a file are on disk (flag FILE_RANGES_TRANSFERRED, BITS's
        IBackgroundCopyCallback3::FileRangesTransferred): ``ranges`` are (offset, length)
        pairs of the remote file. Not retried when it fails."""


class CallbackChannel:
    """This process's callback channel: one ``Connect`` stream that carries the calls of
    every object it exports. Use :meth:`Client.callbacks` to get it."""

    def __init__(self, client: "Client"):
        self._client = client
        self._outgoing: "queue.Queue[Optional[npb.ConnectRequest]]" = queue.Queue()
        self._outgoing.put(npb.ConnectRequest(hello=npb.Hello(pid=os.getpid())))
        self._responses = client._notifications.Connect(iter(self._outgoing.get, None))
        first = next(self._responses)
        if first.WhichOneof("kind") != "welcome":
            raise RuntimeError("ferryd did not welcome the callback channel")
        #: The channel's id, as ferryd gave it.
        self.channel_id: int = first.welcome.channel_id
        self._objects: Dict[int, Callback] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # Calls run on workers so a method may call back into ferry; ferryd sends the
        # calls for one job one at a time.
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ferry-callback")
        self._reader = threading.Thread(target=self._read, name="ferry-connect", daemon=True)
        self._reader.start()

    def export(self, callback: Callback) -> npb.ObjectRef:
        """Exports ``callback`` on this channel; the reference names it to ferryd."""
        with self._lock:
            object_id = next(self._ids)
            self._objects[object_id] = callback
        return npb.ObjectRef(channel_id=self.channel_id, object_id=object_id)

    def close(self) -> None:
        """Ends the stream: ferryd forgets this channel's objects."""
        self._outgoing.put(None)
        self._responses.cancel()
        self._workers.shutdown(wait=False)

    def _read(self) -> None:
        try:
            for message in self._responses:
                if message.WhichOneof("kind") == "invoke":
                    self._workers.submit(self._invoke, message.invoke)
        except Exception:  # the stream ended: cancelled, or the daemon went away
            pass

    def _invoke(self, call: npb.Invoke) -> None:
        with self._lock:
            obj = self._objects.get(call.object_id)
        ok, error = True, ""
        try:
            if obj is None:
                raise LookupError(f"no object {call.object_id} is exported on this channel")
            job = self._client.job(call.job.id)
            if call.method == npb.CALLBACK_METHOD_JOB_TRANSFERRED:
                obj.job_transferred(job, call.job)
            elif call.method == npb.CALLBACK_METHOD_JOB_ERROR:
                obj.job_error(job, call.job)
            elif call.method == npb.CALLBACK_METHOD_JOB_MODIFICATION:
                obj.job_modification(job, call.job)
            elif call.method == npb.CALLBACK_METHOD_FILE_TRANSFERRED:
                obj.file_transferred(job, call.file)
            elif call.method == npb.CALLBACK_METHOD_FILE_RANGES_TRANSFERRED:
                obj.file_ranges_transferred(job, call.file, [(r.offset, r.length) for r in call.ranges])
        except Exception as e:  # noqa: BLE001 - a failed callback is reported to ferryd
            ok, error = False, f"{type(e).__name__}: {e}"
        self._outgoing.put(
            npb.ConnectRequest(reply=npb.InvokeReply(invoke_id=call.invoke_id, ok=ok, error=error))
        )
