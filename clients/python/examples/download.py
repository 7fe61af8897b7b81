"""Downloads URL to PATH with a ferry job: create, add the file, resume, watch, complete.

    python download.py URL PATH        (ferryd's socket: $FERRY_SOCKET or the default)
"""

import sys

from ferry_client import Client, JobState


def main(url: str, path: str) -> int:
    with Client() as client:
        job = client.create_job("python download")
        job.add_file(url, path)
        job.resume()
        for info in job.watch():
            print(f"{JobState(info.state).name}: {info.bytes_transferred}/{info.bytes_total} bytes")
            if info.state == JobState.TRANSFERRED:
                done = job.complete()
                print(f"{path}: {done.files_committed} file(s) committed")
                return 0
            if info.state == JobState.ERROR:
                print(f"failed: {info.error.message}", file=sys.stderr)
                job.cancel()
                return 1
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
