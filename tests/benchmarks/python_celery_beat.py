"""Python Celery beat's precision on an every-second schedule, for the side-by-side figure in
BENCHMARKS.md (celery-web: `site celery beat --bench SECONDS`).

Celery's interval schedules are relative to the last send (`last_run_at` becomes the send
time), so each firing's lateness is the gap to the previous send minus the interval. Runs
`celery beat` (the default PersistentScheduler) for SECONDS against a broker (Redis by
default; nothing consumes the queue, which is purged at the end) and reads the send times
from its log.

    pip install celery==5.5.3 redis
    python tests/benchmarks/python_celery_beat.py --seconds 180 --broker redis://127.0.0.1:6379/15
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        with open(os.path.join(scratch, "beatbench.py"), "w") as module:
            module.write(textwrap.dedent(f"""
                from celery import Celery
                app = Celery("beatbench", broker={args.broker!r})
                app.conf.task_default_queue = "python-beat-bench"
                app.conf.beat_schedule = {{
                    "every second": {{"task": "beatbench.noop", "schedule": 1.0}},
                }}
            """))
        log = os.path.join(scratch, "beat.log")
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "beatbench", "beat", "-l", "info",
             "-s", os.path.join(scratch, "schedule"), "-f", log],
            cwd=scratch,
        )
        time.sleep(args.seconds + 2)
        beat.terminate()
        beat.wait(timeout=30)
        sends = []
        with open(log) as lines:
            for line in lines:
                found = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/\w+\] "
                                 r"Scheduler: Sending due task every second", line)
                if found:
                    sends.append(datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f"))
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "beatbench", "purge", "-f",
             "-Q", "python-beat-bench"],
            cwd=scratch, capture_output=True,
        )
    late = sorted((b - a).total_seconds() * 1000 - 1000 for a, b in zip(sends, sends[1:]))
    if not late:
        sys.exit("no firings logged")
    p = lambda q: late[min(len(late) - 1, round((len(late) - 1) * q))]
    print(f"python celery beat: {len(sends)} firings in {args.seconds} s")
    print(f"lateness (gap to the previous send minus 1 s): p50 {p(0.5):.2f} ms, "
          f"p99 {p(0.99):.2f} ms, max {late[-1]:.2f} ms, mean {statistics.mean(late):.2f} ms")
    print(f"drift over the run: {len(sends)} firings for {args.seconds} slots")


if __name__ == "__main__":
    main()
