"""One WQL query three ways: synchronous, semisynchronous and asynchronous with a sink.

    python queries.py
"""

import sys

from ferry_client import Client, StatusCode

WQL = "SELECT id, display_name, state FROM Job"


class Printer:
    """An object sink: receives batches, then the final status."""

    def indicate(self, objects):
        for o in objects:
            print(f"async: {o['id']} {o['state']}")

    def set_status(self, status):
        print(f"async: ended {status.code.name} {status.message}")


def main() -> int:
    with Client() as client:
        client.create_job("queried")
        for o in client.exec_query(WQL):
            print(f"sync: {o['id']} {o['display_name']!r} {o['state']}")
        enumerator = client.exec_query_semisync(WQL)
        for o in enumerator:
            print(f"semisync: {o['id']}")
        print(f"semisync: ended {enumerator.status.code.name}")
        call = client.exec_query_async(WQL, Printer())
        call.wait()
        return 0 if enumerator.status.code == StatusCode.OK else 1


if __name__ == "__main__":
    sys.exit(main())
