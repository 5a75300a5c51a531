"""Drain of a no-op sync task by a celery-web worker on Redis: `--pool process -c 2` against
the in-process pool (`--pool threads -c 2`). Python Celery's prefork `-c 2` on the same Redis
is measured by `python_celery_redis.py --pool prefork --concurrency 2`.

N messages of `example_site.demo.tasks.add` (a sync `fn`) are sent with Python Celery, no
worker running; then the worker starts. The clock starts at the first stored result (the
worker's start-up, children included, is not counted) and stops when all N are stored.

    python tests/benchmarks/process_pool_drain.py --site target/release/site \
        --redis redis://127.0.0.1:6379/15 --tasks 5000

Prints one JSON line per pool.
"""

import argparse
import json
import os
import subprocess
import time

import redis
from celery import Celery


def count(client):
    return sum(1 for _ in client.scan_iter(match="celery-task-meta-*", count=10_000))


def drain(site, url, tasks, pool, concurrency, config):
    client = redis.Redis.from_url(url)
    client.flushdb()
    app = Celery("drain", broker=url, backend=url)
    for _ in range(tasks):
        app.send_task("example_site.demo.tasks.add", args=[1, 2], queue="celery")
    env = dict(os.environ, CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=url, SITE_CONFIG=config)
    worker = subprocess.Popen(
        [site, "celery", "worker", "-l", "warning", "--pool", pool, "-c", str(concurrency),
         "-Q", "celery"],
        env=env, stdout=subprocess.DEVNULL,
    )
    try:
        while count(client) == 0:
            time.sleep(0.001)
        start = time.perf_counter()
        while count(client) < tasks:
            time.sleep(0.005)
        seconds = time.perf_counter() - start
    finally:
        worker.terminate()
        worker.wait()
    return {"pool": pool, "concurrency": concurrency, "tasks": tasks,
            "drain_per_s": round(tasks / seconds), "us_per_task": round(seconds / tasks * 1e6, 1)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--site", required=True)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--config", default="example-site/config/site.toml")
    args = parser.parse_args()
    for pool in ("process", "threads"):
        print(json.dumps(drain(args.site, args.redis, args.tasks, pool, 2,
                               os.path.abspath(args.config))), flush=True)


if __name__ == "__main__":
    main()
