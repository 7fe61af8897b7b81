"""Subscribes to the creation of jobs and prints the first one's event.

    python events.py
"""

import sys

from ferry_client import Client

WQL = "SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Job'"


def main() -> int:
    with Client() as client:
        events = client.subscribe(WQL)  # in place when it returns
        job = client.create_job("watched for")
        for event in events:
            target = event["TargetInstance"]
            print(f"{event.class_name}: job {target['id']} {target['display_name']!r}")
            if target["id"] == job.id:
                events.cancel()
        print(f"subscription ended: {events.status.code.name}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
