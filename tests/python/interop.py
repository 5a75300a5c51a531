"""Python Celery side of the Redis interop tests (tests/tests/interop_redis.rs).

The app reads its broker and result backend from the environment, so the Rust tests point it at
the Redis database they use:

    INTEROP_BROKER=redis://127.0.0.1:6379/4   broker URL (Redis or RabbitMQ)
    INTEROP_BACKEND=redis://...               result backend URL (the broker's when unset)
    INTEROP_VISIBILITY=2                      visibility timeout, seconds (as the Rust side)
    INTEROP_MAX_PRIORITY=10                   task_queue_max_priority (RabbitMQ's x-max-priority)

Used two ways:

- as the worker's app: `celery -A interop worker -P threads -Q q ...` (run from this folder);
- as an event sender: `python interop.py send-event TYPE --fields '{...}'` sends one event
  through Celery's own dispatcher; `python interop.py receive-event --timeout S` waits for one
  event with Celery's receiver and prints it as JSON;
- as a remote-control client: `python interop.py control-call METHOD --arguments '{...}'`
  broadcasts METHOD with `app.control.broadcast(reply=True)` and prints the replies as JSON;
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
from datetime import datetime

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
if os.environ.get("INTEROP_MAX_PRIORITY"):
    app.conf.task_queue_max_priority = int(os.environ["INTEROP_MAX_PRIORITY"])


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


@app.task(name="interop.py.total")
def total(values):
    """A chord body: the sum of the header's results."""
    return sum(values)


@app.task(name="interop.py.note_failure")
def note_failure(request, exc, traceback, path):
    """A new-style errback (more than one parameter: Celery calls it in-process with the
    failed request, its exception and traceback, then the signature's own arguments):
    appends the failed task's id and exception to the file `path`."""
    with open(path, "a") as f:
        f.write(f"{request.id} {type(exc).__name__}\n")
    return request.id


@app.task(name="interop.py.record")
def record(path, label):
    """Appends `label` to the file `path` (shows the order tasks ran in)."""
    with open(path, "a") as f:
        f.write(label + "\n")
    return label


@app.task(name="interop.shared.record", bind=True, acks_late=True)
def shared_record(self, path, label):
    """Both sides run this name (tests/src/interop_tasks.rs): appends `label py eta start`
    (microseconds since the epoch; `-` without an eta) in one write."""
    eta = self.request.eta
    eta_us = int(datetime.fromisoformat(eta).timestamp() * 1e6) if eta else "-"
    line = f"{label} py {eta_us} {int(time.time() * 1e6)}\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)
    return label


@app.task(name="celery_web_tests.tasks.mark_and_sleep", acks_late=True)
def mark_and_sleep(path, line, seconds):
    """The Rust test task of the same name, so a Python worker can finish what a Rust one held."""
    with open(path, "a") as f:
        f.write(line + "\n")
    time.sleep(seconds)
    return line


def canvas(path):
    """Python builds workflows of tasks that a celery-web worker runs (names of
    tests/src/interop_tasks.rs); prints what each one ended with, as JSON."""
    from celery import chain, chord

    def rust(name, *args, **options):
        return app.signature("interop.rust." + name, args=args, **options)

    def outcome(result, timeout=60, follow_parents=True):
        try:
            return {"status": "SUCCESS",
                    "result": result.get(timeout=timeout, follow_parents=follow_parents)}
        except Exception as error:
            return {"status": result.status, "exception": type(error).__name__,
                    "message": str(error)}

    out = {}
    three = chain(rust("add", 1, 2), rust("add", 3), rust("add", 4)).apply_async()
    out["chain"] = outcome(three)
    out["chain_parents"] = [three.parent.id, three.parent.parent.id]
    out["chain_parent_status"] = [three.parent.status, three.parent.parent.status]
    out["chain_root_id"] = app.backend.get_task_meta(three.id).get("root_id")
    out["chain_ids"] = [three.parent.parent.id, three.parent.id, three.id]
    out["chain_last_meta"] = {k: v for k, v in app.backend.get_task_meta(three.id).items()
                              if k in ("parent_id", "root_id", "group_id")}
    out["immutable"] = outcome(chain(rust("add", 1, 2), rust("add", 10, 20).set(immutable=True))
                               .apply_async())
    callback = rust("add", 10)
    callback_id = callback.freeze().id
    linked = rust("add", 2, 2).apply_async(link=callback)
    out["link"] = outcome(linked)
    out["link_callback"] = outcome(app.AsyncResult(callback_id))
    failing = rust("fail", "x").apply_async(link_error=rust("note_failure", path))
    out["link_error"] = outcome(failing)
    out["link_error_id"] = failing.id
    broken = chain(rust("fail", "y"), rust("add", 1), rust("add", 2)).apply_async()
    out["chain_failed"] = outcome(broken, timeout=30)

    def raw(task_id):
        stored = app.backend.get(app.backend.get_key_for_task(task_id))
        return json.loads(stored) if stored else None

    out["chain_failed_links"] = [(raw(r.id) or {}).get("status") for r in (broken, broken.parent)]
    good = chord([rust("add", i, i) for i in range(10)], rust("total"))()
    out["chord"] = outcome(good)
    header = [rust("add", i, 1) for i in range(100)]
    header[37] = rust("fail", "boom")
    bad = chord(header, rust("total"))()
    # Not following parents: `get` would raise the failed member's own error as soon as it
    # is stored, before the other 99 have run and the body has been failed.
    out["chord_failed"] = outcome(bad, follow_parents=False)
    out["chord_failed_meta"] = (raw(bad.id) or {}).get("result")
    out["chord_leftover_keys"] = sorted(k.decode() for k in app.backend.client.keys("*taskset*"))
    return out


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
    run_canvas = commands.add_parser("canvas")
    run_canvas.add_argument("--path", required=True)
    control_call = commands.add_parser("control-call")
    control_call.add_argument("method")
    control_call.add_argument("--arguments", default="{}")
    control_call.add_argument("--timeout", type=float, default=2)
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
    if options.command == "canvas":
        print(json.dumps(canvas(options.path)))
        return 0
    if options.command == "control-call":
        replies = app.control.broadcast(
            options.method,
            arguments=json.loads(options.arguments),
            reply=True,
            timeout=options.timeout,
        )
        print(json.dumps(replies))
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
