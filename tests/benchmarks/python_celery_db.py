"""Python Celery on a database broker, measured like `site celery bench`.

Celery's own database broker is kombu's SQLAlchemy transport (`sqla+sqlite://`), with results in
SQLAlchemy's result backend (`db+sqlite://`). Same phases as celery-web's bench: enqueue N no-op
tasks one call at a time, drain them with a worker (threads pool), then send tasks one by one to
the idle worker and measure send -> start.

    pip install celery==5.5.3 sqlalchemy
    python tests/benchmarks/python_celery_db.py --tasks 2000 --concurrency 8

Prints one JSON line. The worker runs as `celery -A python_celery_db worker` in a child process.
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

from celery import Celery

WORKDIR = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="celery-py-bench-")
os.environ["BENCH_DIR"] = WORKDIR

app = Celery(
    "python_celery_db",
    broker=f"sqla+sqlite:///{WORKDIR}/broker.sqlite3",
    backend=f"db+sqlite:///{WORKDIR}/results.sqlite3",
)
app.conf.task_default_queue = "bench"
app.conf.worker_prefetch_multiplier = 4
app.conf.broker_connection_retry_on_startup = True


@app.task(name="bench.noop")
def noop(sent_at):
    """Returns when it started (seconds since the epoch)."""
    return time.time()


def successes():
    try:
        with sqlite3.connect(f"{WORKDIR}/results.sqlite3") as db:
            return db.execute("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def start_worker(concurrency):
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "python_celery_db", "worker", "-P", "threads",
         "-c", str(concurrency), "-Q", "bench", "--loglevel", "warning", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=here,
        env=dict(os.environ, BENCH_DIR=WORKDIR, PYTHONPATH=here),
        stdout=subprocess.DEVNULL,
    )


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-tasks", type=int, default=100)
    args = parser.parse_args()

    clock = time.perf_counter()
    for _ in range(args.tasks):
        noop.delay(time.time())
    enqueue = time.perf_counter() - clock

    clock = time.perf_counter()
    worker = start_worker(args.concurrency)
    while successes() < args.tasks:
        time.sleep(0.05)
    drain = time.perf_counter() - clock

    latencies = []
    sent = []
    for _ in range(args.latency_tasks):
        sent_at = time.time()
        sent.append((sent_at, noop.delay(sent_at)))
        time.sleep(0.02)
    for sent_at, result in sent:
        latencies.append((result.get(timeout=120) - sent_at) * 1000)
    worker.terminate()
    worker.wait(30)

    print(json.dumps({
        "celery": "python " + __import__("celery").__version__,
        "broker": "sqla+sqlite", "result_backend": "db+sqlite", "pool": "threads",
        "tasks": args.tasks, "concurrency": args.concurrency,
        "enqueue_per_s": round(args.tasks / enqueue),
        "drain_per_s": round(args.tasks / drain),
        "latency_tasks": args.latency_tasks,
        "latency_p50_ms": round(percentile(latencies, 50), 3),
        "latency_p99_ms": round(percentile(latencies, 99), 3),
    }))


if __name__ == "__main__":
    main()
