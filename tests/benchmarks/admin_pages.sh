#!/usr/bin/env bash
# Times the admin's results pages over HTTP (what a staff user waits for), against a site
# whose celery_taskresult was filled by `site celery bench --results-list ROWS`.
#
#   tests/benchmarks/admin_pages.sh http://127.0.0.1:8000/admin/celery [REPETITIONS]
#
# Basic auth as the example site's demo user (admin/admin): the first request runs Argon2,
# the rest use the remembered check. Prints p50 and max of curl's total time, in ms.
set -euo pipefail
base="${1:?admin base URL, such as http://127.0.0.1:8000/admin/celery}"
repetitions="${2:-20}"

time_page() {
    local label="$1" path="$2"
    local times=()
    for _ in $(seq "$repetitions"); do
        times+=("$(curl -s -o /dev/null -u admin:admin -w '%{http_code} %{time_total}' "$base$path")")
    done
    printf '%s\n' "${times[@]}" | awk -v label="$label" '
        $1 != 200 { print label ": HTTP " $1; bad = 1; exit 1 }
        { ms[NR] = $2 * 1000 }
        END {
            if (bad) exit 1
            n = asort(ms)
            printf "%-34s p50 %7.1f ms   max %7.1f ms\n", label, ms[int((n + 1) / 2)], ms[n]
        }'
}

curl -s -o /dev/null -u admin:admin "$base/results"   # warm up (Argon2 once)
next=$(curl -s -u admin:admin "$base/results" | grep -o 'results?cursor=[^"]*' | head -1)
day=$(date -u -d '3 days ago' +%F)
time_page "results, first page" "/results"
time_page "results, second page" "/${next//&amp;/&}"
time_page "status=FAILURE" "/results?status=FAILURE"
time_page "task=<rare>" "/results?task=reports.yearly.audit"
time_page "worker=w3" "/results?worker=w3%40bench-host"
time_page "status=FAILURE + task" "/results?status=FAILURE&task=shop.search.reindex_product"
time_page "one day" "/results?after=$day&before=$day"
time_page "dashboard" "/"
time_page "/api/tasks?limit=50" "/api/tasks?limit=50"
time_page "/metrics" "/metrics"
