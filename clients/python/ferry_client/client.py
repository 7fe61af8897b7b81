"""The client: a connection to ferryd, its jobs, handlers and queries."""

from __future__ import annotations

import functools
import os
import uuid
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import grpc

from . import paths
from ._proto.ferry.v1 import (
    common_pb2,
    daemon_pb2,
    daemon_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    notifications_pb2 as npb,
    notifications_pb2_grpc,
    queries_pb2,
    queries_pb2_grpc,
)
from .callbacks import Callback, CallbackChannel
from .errors import FerryError
from .queries import AsyncCall, Enumerator, ObjectSink
from .types import JobState, QueryObject, StatusCode

T = TypeVar("T")

#: A file to add: (remote URL, absolute local path), (URL, path, expected SHA-256), or
#: (URL, path, SHA-256 or "", mirrors): mirrors are more URLs of the same content, tried in
#: order when the URL in use fails for good, keeping the progress.
FileSpec = Union[Tuple[str, str], Tuple[str, str, str], Tuple[str, str, str, Sequence[str]]]


def negotiate_credentials(ccache: Optional[str] = None) -> jobs_pb2.Credentials:
    """Credentials for HTTP Negotiate (Kerberos through SPNEGO), for
    ``job.set(credentials=...)``: when the server answers 401 with ``WWW-Authenticate:
    Negotiate``, ferryd gets a ticket for ``HTTP@host`` from the job owner's Kerberos
    tickets (``kinit``) and sends ``Authorization: Negotiate ...`` (BITS:
    IBackgroundCopyJob2::SetCredentials with BG_AUTH_SCHEME_NEGOTIATE). ``ccache`` names
    the credential cache as KRB5CCNAME does; by default the caller's KRB5CCNAME, else the
    owner's default cache."""
    if ccache is None:
        ccache = os.environ.get("KRB5CCNAME", "")
    return jobs_pb2.Credentials(negotiate=jobs_pb2.NegotiateCredentials(ccache=ccache))

#: BITS's BG_LENGTH_TO_EOF: a range length that runs to the end of the file.
LENGTH_TO_EOF = 2**64 - 1

#: A byte range (BITS's BG_FILE_RANGE): (offset, length); length LENGTH_TO_EOF runs to
#: the end of the file.
Range = Tuple[int, int]


def _ranges(ranges: Sequence[Range]) -> List[common_pb2.FileRange]:
    return [common_pb2.FileRange(offset=o, length=n) for o, n in ranges]


def _refusals_raise(f: Callable[..., T]) -> Callable[..., T]:
    """Turns a failed call's grpc.RpcError into a FerryError."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except grpc.RpcError as e:
            raise FerryError.from_rpc_error(e) from None

    return wrapper


class Client:
    """A connection to ferryd on its Unix socket (default: the same rules as the Rust
    client, see :func:`ferry_client.paths.socket_path`). Use it as a context manager or
    call :meth:`close`."""

    def __init__(self, socket: "str | os.PathLike[str] | None" = None):
        self._channel = grpc.insecure_channel(paths.target(socket))
        self._jobs = jobs_pb2_grpc.JobsStub(self._channel)
        self._notifications = notifications_pb2_grpc.NotificationsStub(self._channel)
        self._queries = queries_pb2_grpc.QueriesStub(self._channel)
        self._daemon = daemon_pb2_grpc.DaemonStub(self._channel)
        self._callbacks: Optional[CallbackChannel] = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the callback channel, if one is open, and the connection."""
        if self._callbacks is not None:
            self._callbacks.close()
        self._channel.close()

    # Jobs.

    @_refusals_raise
    def create_job(
        self,
        display_name: str,
        *,
        description: str = "",
        job_type: int = common_pb2.JOB_TYPE_DOWNLOAD,
        priority: int = common_pb2.PRIORITY_NORMAL,
        files: Sequence[FileSpec] = (),
        resume: bool = False,
    ) -> "Job":
        """Creates a job (suspended): add files, then :meth:`Job.resume` it. Or in one call:
        ``files`` (as :meth:`Job.add_files` takes them; all or none) and ``resume=True``
        queue it at once, in the same store transaction."""
        reply = self._jobs.CreateJob(
            jobs_pb2.CreateJobRequest(
                display_name=display_name,
                description=description,
                job_type=job_type,
                priority=priority,
                files=_file_specs(files),
                resume=resume,
            )
        )
        return Job(self, reply.job.id)

    def job(self, job_id: "str | uuid.UUID") -> "Job":
        """The job ``job_id`` (not checked until a call uses it)."""
        return Job(self, str(job_id))

    def list_jobs(self, *, all: bool = False, page_size: int = 0) -> Iterator[common_pb2.Job]:
        """The caller's jobs, oldest first, read a page at a time as the iteration goes
        (``all``: the acknowledged and cancelled ones too)."""
        list_page = _refusals_raise(self._jobs.ListJobs)
        token = ""
        while True:
            page = list_page(jobs_pb2.ListJobsRequest(all=all, page_size=page_size, page_token=token))
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    @_refusals_raise
    def status(self) -> daemon_pb2.StatusResponse:
        """The daemon's status."""
        return self._daemon.Status(daemon_pb2.StatusRequest())

    @_refusals_raise
    def shutdown_daemon(self) -> None:
        """Asks ferryd to stop (open streams end with UNAVAILABLE)."""
        self._daemon.Shutdown(daemon_pb2.ShutdownRequest())

    # Notifications.

    def callbacks(self) -> CallbackChannel:
        """This client's callback channel (opened on first use)."""
        if self._callbacks is None:
            try:
                self._callbacks = CallbackChannel(self)
            except grpc.RpcError as e:
                raise FerryError.from_rpc_error(e) from None
        return self._callbacks

    @_refusals_raise
    def register_handler(self, class_id: "str | uuid.UUID", argv: Sequence[str], workdir: str = "") -> npb.Handler:
        """Registers the program (an absolute path, and its arguments) ferryd starts for
        the notification class ``class_id``."""
        handler = npb.Handler(class_id=str(class_id), argv=list(argv), workdir=workdir)
        return self._notifications.RegisterHandler(npb.RegisterHandlerRequest(handler=handler)).handler

    @_refusals_raise
    def unregister_handler(self, class_id: "str | uuid.UUID") -> None:
        """Removes the handler of ``class_id``."""
        self._notifications.UnregisterHandler(npb.UnregisterHandlerRequest(class_id=str(class_id)))

    @_refusals_raise
    def handlers(self) -> List[npb.Handler]:
        """The caller's handlers."""
        return list(self._notifications.ListHandlers(npb.ListHandlersRequest()).handlers)

    # Queries.

    def exec_query(self, wql: str, *, batch_size: int = 0) -> List[QueryObject]:
        """A data query, synchronously: every object, or a FerryError. ``batch_size``:
        objects per batch ferryd sends (0: its choice); a batch also stops before about
        1 MiB, so no size makes a message larger than gRPC's 4 MiB default."""
        enumerator = self.exec_query_semisync(wql, batch_size=batch_size)
        objects = list(enumerator)  # a refusal raises FerryError here
        status = enumerator.status
        if status is None or status.code != StatusCode.OK:
            raise _query_error(status)
        return objects

    @_refusals_raise
    def exec_query_semisync(self, wql: str, *, batch_size: int = 0) -> Enumerator:
        """A data query, semisynchronously: iterate the enumerator."""
        return Enumerator(self._queries.ExecQuery(queries_pb2.ExecQueryRequest(wql=wql, batch_size=batch_size)))

    @_refusals_raise
    def exec_query_async(self, wql: str, sink: ObjectSink, *, batch_size: int = 0) -> AsyncCall:
        """A data query, asynchronously: ``sink`` gets the batches, then the status."""
        return AsyncCall(self._queries.ExecQuery(queries_pb2.ExecQueryRequest(wql=wql, batch_size=batch_size)), sink)

    @_refusals_raise
    def subscribe(self, wql: str) -> Enumerator:
        """An event query, semisynchronously: iterate the events as they happen (each an
        object whose ``TargetInstance`` is the job); :meth:`Enumerator.cancel` ends it.
        Returns once the subscription is in place: no later event is missed."""
        responses = self._queries.ExecNotificationQuery(queries_pb2.ExecNotificationQueryRequest(wql=wql))
        responses.initial_metadata()  # ferryd answers once the subscription is in place
        return Enumerator(responses)

    @_refusals_raise
    def subscribe_async(self, wql: str, sink: ObjectSink) -> AsyncCall:
        """An event query, asynchronously: ``sink`` gets each event as a batch of one."""
        responses = self._queries.ExecNotificationQuery(queries_pb2.ExecNotificationQueryRequest(wql=wql))
        responses.initial_metadata()  # ferryd answers once the subscription is in place
        return AsyncCall(responses, sink)

    @_refusals_raise
    def exec_method(self, job_id: "str | uuid.UUID", method: str) -> common_pb2.Job:
        """Calls a method of a job: "Resume", "Suspend", "Cancel" or "Complete"."""
        return self._queries.ExecMethod(queries_pb2.ExecMethodRequest(job_id=str(job_id), method=method)).job


def _query_error(status) -> FerryError:
    message = status.message if status else "the query ended without a status"
    code = grpc.StatusCode.UNAVAILABLE if status and status.code == StatusCode.SHUTTING_DOWN else grpc.StatusCode.UNKNOWN
    return FerryError(code, message)


class Job:
    """A transfer job of the caller's (BITS's IBackgroundCopyJob)."""

    def __init__(self, client: Client, job_id: str):
        self._client = client
        #: The job's id, a UUID.
        self.id = job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    @_refusals_raise
    def info(self) -> common_pb2.Job:
        """The job now."""
        return self._client._jobs.GetJob(jobs_pb2.GetJobRequest(job_id=self.id)).job

    def state(self) -> JobState:
        """The job's state now."""
        return JobState(self.info().state)

    @_refusals_raise
    def add_files(self, files: Sequence[FileSpec]) -> List[common_pb2.File]:
        """Adds files, all or none: (remote URL, absolute local path[, SHA-256 hex[,
        mirrors]])."""
        specs = _file_specs(files)
        return list(self._client._jobs.AddFiles(jobs_pb2.AddFilesRequest(job_id=self.id, files=specs)).files)

    def add_file(
        self, remote_url: str, local_path: str, expected_sha256: str = "", mirrors: Sequence[str] = ()
    ) -> common_pb2.File:
        """Adds one file; ``mirrors`` are more URLs of the same content, tried in order when
        the URL in use fails for good (the download keeps its progress)."""
        return self.add_files([(remote_url, local_path, expected_sha256, mirrors)])[0]

    @_refusals_raise
    def set_remote_name(self, file_index: int, remote_url: str) -> common_pb2.File:
        """Changes a file's URL, keeping its progress (BITS's
        IBackgroundCopyFile2::SetRemoteName). Allowed until the job is final; a running job
        continues from the new URL at once. The bytes already downloaded are kept when the
        new server has the same validator (ETag, else Last-Modified); else the file starts
        over, as in BITS."""
        request = jobs_pb2.SetRemoteNameRequest(job_id=self.id, file_index=file_index, remote_url=remote_url)
        return self._client._jobs.SetRemoteName(request).file

    @_refusals_raise
    def replace_remote_prefix(self, old_prefix: str, new_prefix: str) -> int:
        """Replaces ``old_prefix`` with ``new_prefix`` in every URL of the job that starts
        with it (each file's URL and its mirrors), all or none, keeping progress (BITS's
        IBackgroundCopyJob3::ReplaceRemotePrefix). Returns how many files changed."""
        request = jobs_pb2.ReplaceRemotePrefixRequest(job_id=self.id, old_prefix=old_prefix, new_prefix=new_prefix)
        return self._client._jobs.ReplaceRemotePrefix(request).files_changed

    @_refusals_raise
    def add_file_with_ranges(self, remote_url: str, local_path: str, ranges: Sequence[Range]) -> common_pb2.File:
        """Adds a file of which only ``ranges`` ((offset, length) pairs, length
        :data:`LENGTH_TO_EOF` to the end) are downloaded, written one after the other in
        this order into ``local_path`` (BITS's IBackgroundCopyJob3::AddFileWithRanges).
        Overlapping or empty ranges are refused (``invalid_argument``)."""
        spec = jobs_pb2.FileSpec(remote_url=remote_url, local_path=local_path, ranges=_ranges(ranges))
        return self._client._jobs.AddFiles(jobs_pb2.AddFilesRequest(job_id=self.id, files=[spec])).files[0]

    @_refusals_raise
    def add_file_on_demand(self, remote_url: str, local_path: str) -> common_pb2.File:
        """Adds an on-demand file (BITS's BITS_JOB_PROPERTY_ON_DEMAND_MODE): nothing
        downloads until :meth:`request_file_ranges` asks for ranges while the job runs;
        each lands at its own offset. The job stays transferring until completed."""
        spec = jobs_pb2.FileSpec(remote_url=remote_url, local_path=local_path, on_demand=True)
        return self._client._jobs.AddFiles(jobs_pb2.AddFilesRequest(job_id=self.id, files=[spec])).files[0]

    @_refusals_raise
    def request_file_ranges(self, file_index: int, ranges: Sequence[Range]) -> common_pb2.File:
        """Asks for ranges of an on-demand file while the job runs (BITS's
        IBackgroundCopyFile6::RequestFileRanges); they may overlap earlier ones."""
        request = jobs_pb2.RequestFileRangesRequest(job_id=self.id, file_index=file_index, ranges=_ranges(ranges))
        return self._client._jobs.RequestFileRanges(request).file

    @_refusals_raise
    def update_download_position(self, file_index: int, position: int) -> common_pb2.File:
        """Tells where the application reads an on-demand file: missing bytes from there
        on come first (BITS's IBackgroundCopyFile6::UpdateDownloadPosition)."""
        request = jobs_pb2.UpdateDownloadPositionRequest(job_id=self.id, file_index=file_index, position=position)
        return self._client._jobs.UpdateDownloadPosition(request).file

    def file_ranges(self, file_index: int) -> List[Range]:
        """The ranges a file was added with or that were requested of it (BITS's
        IBackgroundCopyFile2::GetFileRanges); empty for a whole file."""
        return [(r.offset, r.length) for r in self.files()[file_index].ranges]

    def filled_file_ranges(self, file_index: int) -> List[Range]:
        """The ranges of the remote file whose bytes are on disk (BITS's
        IBackgroundCopyFile6::GetFilledFileRanges)."""
        return [(r.offset, r.length) for r in self.files()[file_index].filled_ranges]

    @_refusals_raise
    def files(self) -> List[common_pb2.File]:
        """The job's files in order (every page)."""
        out, token = [], ""
        while True:
            page = self._client._jobs.ListFiles(jobs_pb2.ListFilesRequest(job_id=self.id, page_token=token))
            out.extend(page.files)
            token = page.next_page_token
            if not token:
                return out

    @_refusals_raise
    def resume(self) -> common_pb2.Job:
        """Queues the job."""
        return self._client._jobs.ResumeJob(jobs_pb2.ResumeJobRequest(job_id=self.id)).job

    @_refusals_raise
    def suspend(self) -> common_pb2.Job:
        """Stops the transfer, keeping its progress."""
        return self._client._jobs.SuspendJob(jobs_pb2.SuspendJobRequest(job_id=self.id)).job

    @_refusals_raise
    def cancel(self) -> common_pb2.Job:
        """Cancels the job and deletes its temporary files."""
        return self._client._jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=self.id)).job

    @_refusals_raise
    def complete(self) -> jobs_pb2.CompleteJobResponse:
        """Moves the transferred files to their destinations (atomically)."""
        return self._client._jobs.CompleteJob(jobs_pb2.CompleteJobRequest(job_id=self.id))

    @_refusals_raise
    def set(self, **properties) -> common_pb2.Job:
        """Changes properties: the fields of ``SetJobPropertiesRequest`` by name, e.g.
        ``notify_flags=NotifyFlag.JOB_TRANSFERRED``,
        ``cost_flags=CostState.TRANSFER_NOT_ROAMING`` (BITS's SetProperty of
        BITS_JOB_PROPERTY_ID_COST_FLAGS; BITS's DWORD is taken as it is),
        ``ignore_congestion=True`` (BITS_COST_OPTION_IGNORE_CONGESTION: the job does not
        yield to other traffic); a list for ``notify_command``, ``headers`` or
        ``pinned_public_keys``."""
        for name in ("notify_command", "headers", "pinned_public_keys"):
            if name in properties:
                properties[name] = common_pb2.StringList(values=list(properties[name]))
        for name in ("notify_flags", "redirect_policy", "cost_flags"):
            if name in properties:
                properties[name] = int(properties[name])
        request = jobs_pb2.SetJobPropertiesRequest(job_id=self.id, **properties)
        return self._client._jobs.SetJobProperties(request).job

    def set_credentials(self, scheme: str, user: str = "", password: str = "", token: str = "",
                        target: str = "server") -> common_pb2.Job:
        """Sets the credentials of the job's requests (BITS's IBackgroundCopyJob2::
        SetCredentials): ``scheme`` is ``basic``, ``digest`` (RFC 7616) or ``bearer``
        (``token``); ``target="proxy"`` sets the proxy's (basic only, BG_AUTH_TARGET_PROXY).
        Secrets are write-only: the job shows ``basic USER``, ``digest USER`` or ``bearer``."""
        pair = jobs_pb2.BasicCredentials(user=user, password=password)
        if scheme == "basic":
            credentials = jobs_pb2.Credentials(basic=pair)
        elif scheme == "digest":
            credentials = jobs_pb2.Credentials(digest=pair)
        elif scheme == "bearer":
            credentials = jobs_pb2.Credentials(bearer_token=token)
        else:
            raise ValueError(f"unknown scheme {scheme!r} (expected basic, digest or bearer)")
        return self._set_credentials(credentials, target)

    def remove_credentials(self, target: str = "server") -> common_pb2.Job:
        """Removes the job's (or, with ``target="proxy"``, its proxy's) credentials (BITS's
        IBackgroundCopyJob2::RemoveCredentials)."""
        return self._set_credentials(jobs_pb2.Credentials(clear=True), target)

    @_refusals_raise
    def _set_credentials(self, credentials, target: str) -> common_pb2.Job:
        if target not in ("server", "proxy"):
            raise ValueError(f"unknown target {target!r} (expected server or proxy)")
        field = "credentials" if target == "server" else "proxy_credentials"
        request = jobs_pb2.SetJobPropertiesRequest(job_id=self.id, **{field: credentials})
        return self._client._jobs.SetJobProperties(request).job

    def set_client_certificate(self, certificate_file: str, key_file: str = "") -> common_pb2.Job:
        """The client certificate (PEM file, read as the job's owner) sent to servers that
        require one, and its key's file when apart (BITS's IBackgroundCopyJobHttpOptions::
        SetClientCertificateByName); "" clears it."""
        return self.set(client_certificate=certificate_file, client_key=key_file)

    def set_max_download_size(self, size: int) -> common_pb2.Job:
        """The largest file the job downloads, in bytes; 0 removes the limit (BITS's
        BITS_JOB_PROPERTY_MAX_DOWNLOAD_SIZE). A file whose announced or actual size passes
        it fails the job for good (error code ``max_download_size``), with no byte past
        the limit written."""
        return self.set(max_download_size=size)

    def set_minimum_notification_interval_ms(self, ms: int) -> common_pb2.Job:
        """The least time between two job_modification callbacks, in milliseconds (at
        most a day); 0 restores the default, 500 (BITS's
        BITS_JOB_PROPERTY_MINIMUM_NOTIFICATION_INTERVAL_MS)."""
        return self.set(minimum_notification_interval_ms=ms)

    def set_http_method(self, method: str) -> common_pb2.Job:
        """The HTTP method of the job's requests, e.g. ``"POST"``; ``""`` restores the
        default (GET, or PUT for an upload). Not for tus uploads (BITS's
        IBackgroundCopyJobHttpOptions2::SetHttpMethod)."""
        return self.set(http_method=method)

    @_refusals_raise
    def take_ownership(self) -> common_pb2.Job:
        """Makes another user's job the caller's (BITS's IBackgroundCopyJob2::
        TakeOwnership): for root and the admin group of the system-wide ferryd. The job
        arrives suspended, without its progress, secrets, notify command, notification
        class, CA file or reply file; its files are then opened as the caller."""
        return self._client._jobs.TakeOwnership(jobs_pb2.TakeOwnershipRequest(job_id=self.id)).job

    def watch(self) -> Iterator[common_pb2.Job]:
        """The job now, then after every change, until it reaches a final state (a
        daemon shutdown raises a FerryError with ``daemon_gone``)."""
        stream = self._client._jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=self.id))
        try:
            for message in stream:
                yield message.job
        except grpc.RpcError as e:
            raise FerryError.from_rpc_error(e) from None
        finally:
            stream.cancel()

    def wait_for(self, *states: JobState) -> common_pb2.Job:
        """Watches the job until it is in one of ``states`` (or a final state); returns it."""
        for info in self.watch():
            if info.state in states or JobState(info.state).is_final:
                return info
        return self.info()

    @_refusals_raise
    def set_notify_interface(self, callback: Optional[Callback]) -> None:
        """Sets the job's callback object (exported on the client's callback channel), or
        clears it with None."""
        request = npb.SetNotifyInterfaceRequest(job_id=self.id)
        if callback is not None:
            request.callback.CopyFrom(self._client.callbacks().export(callback))
        self._client._notifications.SetNotifyInterface(request)

    @_refusals_raise
    def set_validation_state(self, file_index: int, valid: bool) -> common_pb2.File:
        """The application's verdict on a transferred file; False discards it."""
        request = npb.SetValidationStateRequest(job_id=self.id, file_index=file_index, valid=valid)
        return self._client._notifications.SetValidationState(request).file


def _file_specs(files: Sequence[FileSpec]) -> List[jobs_pb2.FileSpec]:
    """(remote URL, absolute local path[, SHA-256 hex[, mirrors]]) tuples as the wire's."""
    return [
        jobs_pb2.FileSpec(
            remote_url=f[0],
            local_path=f[1],
            expected_sha256=(f[2] if len(f) > 2 else ""),
            mirrors=list(f[3]) if len(f) > 3 else [],
        )
        for f in files
    ]
