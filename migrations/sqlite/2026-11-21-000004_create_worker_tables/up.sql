-- Workers: one row per worker node name, upserted by its heartbeat every 2 seconds.
CREATE TABLE celery_worker (
    hostname TEXT PRIMARY KEY NOT NULL,
    pid BIGINT NOT NULL,
    concurrency BIGINT NOT NULL,
    pool TEXT NOT NULL,
    queues TEXT NOT NULL DEFAULT '[]',
    active BIGINT NOT NULL DEFAULT 0,
    processed BIGINT NOT NULL DEFAULT 0,
    succeeded BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    software TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    last_heartbeat TIMESTAMP NOT NULL,
    stopped_at TIMESTAMP
);

-- Revoked task ids: workers skip them until the revocation expires.
CREATE TABLE celery_revoked (
    task_id TEXT PRIMARY KEY NOT NULL,
    revoked_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX celery_revoked_revoked_at ON celery_revoked (revoked_at);
CREATE INDEX celery_revoked_expires_at ON celery_revoked (expires_at);

-- Results are listed newest first with keyset pagination on (date_done, id), optionally
-- filtered by one column: one composite index per filter, so a page reads only its rows.
DROP INDEX celery_taskresult_task_name;
DROP INDEX celery_taskresult_status;
DROP INDEX celery_taskresult_worker;
DROP INDEX celery_taskresult_date_done;
DROP INDEX celery_taskresult_periodic_task_name;
CREATE INDEX celery_taskresult_done ON celery_taskresult (date_done, id);
CREATE INDEX celery_taskresult_status_done ON celery_taskresult (status, date_done, id);
CREATE INDEX celery_taskresult_task_name_done ON celery_taskresult (task_name, date_done, id);
CREATE INDEX celery_taskresult_worker_done ON celery_taskresult (worker, date_done, id);
CREATE INDEX celery_taskresult_periodic_task_name_done
    ON celery_taskresult (periodic_task_name, date_done, id);
-- A status with another filter ("failures of task X", "on worker Y", "of periodic task Z"):
-- with only the single-filter indexes SQLite walks the task's (or worker's) whole range
-- checking each row's status, half a second on a million rows when nothing matches.
CREATE INDEX celery_taskresult_status_task_name_done
    ON celery_taskresult (status, task_name, date_done, id);
CREATE INDEX celery_taskresult_status_worker_done
    ON celery_taskresult (status, worker, date_done, id);
CREATE INDEX celery_taskresult_status_periodic_task_name_done
    ON celery_taskresult (status, periodic_task_name, date_done, id);
