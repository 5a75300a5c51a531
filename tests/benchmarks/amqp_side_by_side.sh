#!/usr/bin/env bash
# RabbitMQ side by side, one round: the bare-lapin ceiling, celery-web (`site celery bench`)
# and Python Celery 5.5.3, on the same RabbitMQ virtual host, results on the same Redis
# database. Each line printed is one JSON report (BENCHMARKS.md, "RabbitMQ").
#
#   cargo build --release -p example-site -p celery-web-tests --bins
#   pip install celery==5.5.3 redis
#   bash tests/benchmarks/amqp_side_by_side.sh [TASKS]
#
# Needs rabbitmqctl (it makes the `celery-web-bench` virtual host) and redis-cli.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tasks="${1:-20000}"
site="$root/target/release/example-site"
ceiling="$root/target/release/amqp_ceiling"
vhost=celery-web-bench
rabbitmqctl -q add_vhost "$vhost" 2>/dev/null || true
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
amqp="amqp://guest:guest@127.0.0.1:5672/$vhost"
redis=redis://127.0.0.1:6379/15
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"

echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
for senders in 1 8; do
    "$ceiling" --url "$amqp" --tasks "$tasks" --senders "$senders" --prefetch 256
done
export SITE_CONFIG="$root/example-site/config/site.toml" CELERY_BROKER_URL="$amqp" \
    CELERY_RESULT_BACKEND="$redis" CELERY_TASK_TRACK_STARTED=false
"$site" migrate >/dev/null
for senders in 1 8; do
    redis-cli -u "$redis" flushdb >/dev/null
    "$site" celery bench --tasks "$tasks" --senders "$senders" --latency-tasks 1000 2>/dev/null
done
redis-cli -u "$redis" flushdb >/dev/null
python3 "$root/tests/benchmarks/python_celery_redis.py" --redis "$redis" --broker "$amqp" \
    --tasks "$tasks" --pool threads --concurrency 8 --latency-tasks 300 --latency-gap-ms 20
