-- The database broker: one row per message waiting, scheduled (eta) or leased to a worker.
-- Times are microseconds since the Unix epoch (UTC).
CREATE TABLE celery_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    task_id TEXT NOT NULL,
    task_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    visible_at BIGINT NOT NULL,
    eta BIGINT,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX celery_message_claim ON celery_message (queue, priority DESC, visible_at, id);

-- Messages a worker could not run (malformed, unknown task), kept for inspection.
CREATE TABLE celery_dead_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Task results, modeled on django-celery-results' TaskResult.
CREATE TABLE celery_taskresult (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    periodic_task_name TEXT,
    task_name TEXT,
    task_args TEXT,
    task_kwargs TEXT,
    status TEXT NOT NULL DEFAULT 'PENDING',
    worker TEXT,
    content_type TEXT NOT NULL DEFAULT 'application/json',
    content_encoding TEXT NOT NULL DEFAULT 'utf-8',
    result TEXT,
    date_created TIMESTAMP NOT NULL,
    date_started TIMESTAMP,
    date_done TIMESTAMP NOT NULL,
    traceback TEXT,
    meta TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    queue TEXT
);
CREATE INDEX celery_taskresult_task_name ON celery_taskresult (task_name);
CREATE INDEX celery_taskresult_status ON celery_taskresult (status);
CREATE INDEX celery_taskresult_worker ON celery_taskresult (worker);
CREATE INDEX celery_taskresult_date_created ON celery_taskresult (date_created);
CREATE INDEX celery_taskresult_date_done ON celery_taskresult (date_done);
CREATE INDEX celery_taskresult_periodic_task_name ON celery_taskresult (periodic_task_name);
