"""Python Celery side of the Redis interop tests (tests/tests/interop_redis.rs).

The app reads its broker and result backend from the environment, so the Rust tests point it at
the Redis database they use:

    INTEROP_BROKER=redis://127.0.0.1:6379/4   broker URL (Redis or RabbitMQ)
    INTEROP_BACKEND=redis://...               result backend URL (the broker's when unset)
    INTEROP_VISIBILITY=2                      visibility timeout, seconds (as the Rust side)

Used two ways:

- as the worker's app: `celery -A interop worker -P threads -Q q ...` (run from this folder);
- as an event sender: `python interop.py send-event TYPE --fields '{...}'` sends one event
  through Celery's own dispatcher; `python interop.py receive-event --timeout S` waits for one
  event with Celery's receiver and prints it as JSON;
- as a client: `python interop.py send NAME --args '[1]' --kwargs '{}' [--countdown S]
  [--expires S] [--priority P] [--retries N] [--queue Q]` prints the task id;
  `python interop.py get ID [--timeout S]` prints {"status", "result"} (or the exception) as JSON.
"""

import argparse
import json
import os
import signal
import sys
import time

from celery import Celery

BROKER = os.environ.get("INTEROP_BROKER", "redis://127.0.0.1:6379/4")
BACKEND = os.environ.get("INTEROP_BACKEND", BROKER)
VISIBILITY = float(os.environ.get("INTEROP_VISIBILITY", "3600"))

app = Celery("interop", broker=BROKER, backend=BACKEND)
app.conf.update(
    broker_transport_options={"visibility_timeout": VISIBILITY},
    result_backend_transport_options={"visibility_timeout": VISIBILITY},
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_extended=True,
)


@app.task(name="interop.py.add")
def add(x, y):
    return x + y


@app.task(name="interop.py.describe", bind=True)
def describe(self, *args, **kwargs):
    """What arrived: arguments and the request's options."""
    return {
        "args": list(args),
        "kwargs": kwargs,
        "retries": self.request.retries,
        "priority": (self.request.delivery_info or {}).get("priority"),
        "eta": self.request.eta,
        "expires": self.request.expires,
        "started_at": time.time(),
    }


@app.task(name="interop.py.flaky", bind=True, max_retries=5)
def flaky(self, failures):
    """Retries itself until it has been retried `failures` times; returns the count."""
    if self.request.retries < failures:
        raise self.retry(countdown=0.05)
    return self.request.retries


@app.task(name="interop.py.fail")
def fail(message):
    raise ValueError(message)


@app.task(name="interop.py.record")
def record(path, label):
    """Appends `label` to the file `path` (shows the order tasks ran in)."""
    with open(path, "a") as f:
        f.write(label + "\n")
    return label


@app.task(name="celery_web_tests.tasks.mark_and_sleep", acks_late=True)
def mark_and_sleep(path, line, seconds):
    """The Rust test task of the same name, so a Python worker can finish what a Rust one held."""
    with open(path, "a") as f:
        f.write(line + "\n")
    time.sleep(seconds)
    return line


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser("send")
    send.add_argument("name")
    send.add_argument("--args", default="[]")
    send.add_argument("--kwargs", default="{}")
    send.add_argument("--countdown", type=float)
    send.add_argument("--expires", type=float)
    send.add_argument("--priority", type=int)
    send.add_argument("--retries", type=int, default=0)
    send.add_argument("--queue", default="celery")
    send_event = commands.add_parser("send-event")
    send_event.add_argument("type")
    send_event.add_argument("--fields", default="{}")
    receive_event = commands.add_parser("receive-event")
    receive_event.add_argument("--timeout", type=float, default=20)
    get = commands.add_parser("get")
    get.add_argument("id")
    get.add_argument("--timeout", type=float, default=30)
    options = parser.parse_args()
    if options.command == "send-event":
        with app.connection_for_write() as connection:
            dispatcher = app.events.Dispatcher(connection, hostname="interop-py@host")
            dispatcher.send(options.type, **json.loads(options.fields))
        return 0
    if options.command == "receive-event":
        received = []
        signal.alarm(int(options.timeout))  # nothing came: SIGALRM ends the process
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(connection)

            def first(event):
                received.append(event)
                receiver.should_stop = True

            receiver.handlers = {"*": first}
            receiver.capture(limit=None, timeout=None, wakeup=False)
        print(json.dumps(received[0]))
        return 0
    if options.command == "send":
        extra = {}
        if options.priority is not None:
            extra["priority"] = options.priority
        result = app.send_task(
            options.name,
            args=json.loads(options.args),
            kwargs=json.loads(options.kwargs),
            countdown=options.countdown,
            expires=options.expires,
            retries=options.retries,
            queue=options.queue,
            **extra,
        )
        print(result.id)
    else:
        result = app.AsyncResult(options.id)
        try:
            value = result.get(timeout=options.timeout)
            print(json.dumps({"status": result.status, "result": value}))
        except Exception as error:  # the task's own exception, rebuilt from the stored meta
            print(
                json.dumps(
                    {
                        "status": result.status,
                        "exception": type(error).__name__,
                        "message": str(error),
                    }
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
