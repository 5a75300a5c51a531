"""Celery's own event receiver, for the events tests (tests/tests/events_control.rs).

    python events.py BROKER_URL SECONDS

prints every event received within SECONDS as one JSON line (flushed at once), with the
routing key and whether it came in a list (`task.multi`) under `_routing_key` / `_batched`.
Uses `app.events.Receiver`, as Flower and `celery events` do.
"""

import json
import sys
import time

from celery import Celery

broker, seconds = sys.argv[1], float(sys.argv[2])
app = Celery("events-test", broker=broker)

with app.connection_for_read() as connection:
    receiver = app.events.Receiver(connection, handlers={"*": lambda event: None})

    original = receiver._receive

    def receive(body, message, list=list, isinstance=isinstance):
        routing_key = message.delivery_info.get("routing_key")
        batched = isinstance(body, list)
        for event in body if batched else [body]:
            event = dict(event)
            event["_routing_key"] = routing_key
            event["_batched"] = batched
            event["_headers"] = message.headers
            print(json.dumps(event), flush=True)
        return original(body, message)

    receiver._receive = receive
    print(json.dumps({"type": "receiver-ready"}), flush=True)
    deadline = time.time() + seconds
    try:
        for _ in receiver.itercapture(limit=None, timeout=1.0, wakeup=False):
            if time.time() > deadline:
                break
    except Exception:
        pass
    # itercapture stops at the first 1 s without events; keep draining until the deadline.
    while time.time() < deadline:
        try:
            receiver.capture(limit=None, timeout=max(0.1, deadline - time.time()), wakeup=False)
        except Exception:
            pass
