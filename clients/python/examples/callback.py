"""A callback object completes a download when ferryd calls its job_transferred.

    python callback.py URL PATH
"""

import sys
import threading

from ferry_client import Callback, Client, NotifyFlag


class CompleteWhenTransferred(Callback):
    def __init__(self):
        self.finished = threading.Event()
        self.failed = None

    def job_transferred(self, job, info):
        job.complete()  # a callback may call back into ferry
        self.finished.set()

    def job_error(self, job, info):
        self.failed = info.error.message
        job.cancel()
        self.finished.set()


def main(url: str, path: str) -> int:
    with Client() as client:
        job = client.create_job("python callback")
        job.add_file(url, path)
        job.set(notify_flags=NotifyFlag.JOB_TRANSFERRED | NotifyFlag.JOB_ERROR)
        callback = CompleteWhenTransferred()
        job.set_notify_interface(callback)
        job.resume()
        if not callback.finished.wait(120):
            print("no callback within 120 s", file=sys.stderr)
            return 1
        if callback.failed:
            print(f"failed: {callback.failed}", file=sys.stderr)
            return 1
        print(f"{path}: completed by the callback")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
