"""Python Celery on Redis (broker and result backend), measured like `site celery bench`.
With `--broker amqp://...` the broker is RabbitMQ and the results stay on Redis.

Same phases as celery-web's bench, on the same Redis (and RabbitMQ):

1. enqueue: --tasks no-op tasks sent one `delay` call at a time, no worker running;
2. drain: a worker process (`--pool`, `--concurrency`) runs them all; the clock starts when the
   first task's result is in (so the worker's start-up, about a second, is not counted) and
   stops when every result is stored;
3. latency: with the worker idle, --latency-tasks tasks are sent --latency-gap-ms apart (2 ms,
   as celery-web's bench); each returns the time it started; send -> start in ms.

    pip install celery==5.5.3 redis          # gevent too for --pool gevent
    python tests/benchmarks/python_celery_redis.py --redis redis://127.0.0.1:6379/15 \
        --tasks 20000 --pool threads --concurrency 8
    python tests/benchmarks/python_celery_redis.py --redis redis://127.0.0.1:6379/15 \
        --broker amqp://guest:guest@127.0.0.1:5672/%2f --tasks 20000 --pool threads --concurrency 8

The database given is flushed first. Prints one JSON line.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import redis
from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/15")
BROKER_URL = os.environ.get("BENCH_BROKER", REDIS_URL)

app = Celery("python_celery_redis", broker=BROKER_URL, backend=REDIS_URL)
app.conf.task_default_queue = "bench"
app.conf.worker_prefetch_multiplier = 4
app.conf.broker_connection_retry_on_startup = True


@app.task(name="bench.noop")
def noop(sent_at):
    """Returns when it started (seconds since the epoch)."""
    return time.time()


def results(client):
    """How many task results are stored (the only celery-task-meta-* keys in this database)."""
    count = 0
    for _ in client.scan_iter(match="celery-task-meta-*", count=10_000):
        count += 1
    return count


def start_worker(pool, concurrency):
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "python_celery_redis", "worker", "-P", pool,
         "-c", str(concurrency), "-Q", "bench", "--loglevel", "warning", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=here,
        env=dict(os.environ, BENCH_REDIS=REDIS_URL, BENCH_BROKER=BROKER_URL, PYTHONPATH=here),
        stdout=subprocess.DEVNULL,
    )


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def enqueue(count):
    """Phase 1, in a child process: its result subscriptions (Celery subscribes to each task's
    channel when it sends it) end with it instead of loading the drain."""
    clock = time.perf_counter()
    queued = [noop.delay(time.time()) for _ in range(count)]
    elapsed = time.perf_counter() - clock
    print(json.dumps({"seconds": elapsed, "first": queued[0].id, "last": queued[-1].id}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default=REDIS_URL)
    parser.add_argument("--broker", default=None, help="the broker, when not the Redis database")
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-tasks", type=int, default=1000)
    parser.add_argument("--latency-gap-ms", type=float, default=2.0,
                        help="pause between latency sends; celery-web's bench uses 2 ms, more "
                             "than Python Celery drains (it queues up): 20 ms measures it idle")
    parser.add_argument("--enqueue-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    broker = args.broker or args.redis
    if args.redis != REDIS_URL or broker != BROKER_URL:
        os.environ["BENCH_REDIS"] = args.redis
        os.environ["BENCH_BROKER"] = broker
        os.execv(sys.executable, [sys.executable] + sys.argv)
    if args.enqueue_only:
        enqueue(args.tasks)
        return
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    if BROKER_URL != REDIS_URL:
        with app.connection_for_write() as connection:
            try:
                connection.default_channel.queue_purge("bench")
            except Exception:  # not declared yet: nothing to purge
                pass

    sent = json.loads(subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--enqueue-only", "--tasks", str(args.tasks)],
        check=True, capture_output=True, text=True,
    ).stdout)

    worker = start_worker(args.pool, args.concurrency)
    while not client.exists("celery-task-meta-" + sent["first"]):
        time.sleep(0.002)
    clock = time.perf_counter()
    while not client.exists("celery-task-meta-" + sent["last"]):
        time.sleep(0.005)
    while results(client) < args.tasks:
        time.sleep(0.005)
    drain = time.perf_counter() - clock

    time.sleep(0.5)
    latencies = []
    queued = []
    for _ in range(args.latency_tasks):
        sent_at = time.time()
        queued.append((sent_at, noop.delay(sent_at)))
        time.sleep(args.latency_gap_ms / 1000)
    for sent_at, result in queued:
        latencies.append((result.get(timeout=120) - sent_at) * 1000)
    worker.terminate()
    worker.wait(30)

    print(json.dumps({
        "celery": "python " + __import__("celery").__version__,
        "broker": BROKER_URL, "result_backend": REDIS_URL, "pool": args.pool,
        "tasks": args.tasks, "concurrency": args.concurrency,
        "enqueue_per_s": round(args.tasks / sent["seconds"]),
        "drain_per_s": round(args.tasks / drain),
        "latency_tasks": args.latency_tasks, "latency_gap_ms": args.latency_gap_ms,
        "latency_p50_ms": round(percentile(latencies, 50), 3),
        "latency_p99_ms": round(percentile(latencies, 99), 3),
    }))


if __name__ == "__main__":
    main()
