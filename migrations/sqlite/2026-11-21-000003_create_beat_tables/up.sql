-- Beat: periodic tasks and their schedules (modeled on django-celery-beat), the change marker
-- beat polls, and the firing keys that make every firing happen once.

CREATE TABLE celery_beat_interval (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    every BIGINT NOT NULL CHECK (every >= 1),
    period TEXT NOT NULL CHECK (period IN ('days', 'hours', 'minutes', 'seconds', 'microseconds')),
    UNIQUE (every, period)
);

CREATE TABLE celery_beat_crontab (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    minute TEXT NOT NULL DEFAULT '*',
    hour TEXT NOT NULL DEFAULT '*',
    day_of_week TEXT NOT NULL DEFAULT '*',
    day_of_month TEXT NOT NULL DEFAULT '*',
    month_of_year TEXT NOT NULL DEFAULT '*',
    timezone TEXT NOT NULL DEFAULT 'UTC',
    UNIQUE (minute, hour, day_of_week, day_of_month, month_of_year, timezone)
);

CREATE TABLE celery_beat_solar (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL CHECK (event IN ('dawn_astronomical', 'dawn_nautical', 'dawn_civil',
        'sunrise', 'solar_noon', 'sunset', 'dusk_civil', 'dusk_nautical', 'dusk_astronomical')),
    latitude DOUBLE NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude DOUBLE NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    UNIQUE (event, latitude, longitude)
);

CREATE TABLE celery_beat_clocked (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    clocked_time TIMESTAMP NOT NULL UNIQUE
);

CREATE TABLE celery_periodic_task (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    interval_id BIGINT REFERENCES celery_beat_interval (id) ON DELETE CASCADE,
    crontab_id BIGINT REFERENCES celery_beat_crontab (id) ON DELETE CASCADE,
    solar_id BIGINT REFERENCES celery_beat_solar (id) ON DELETE CASCADE,
    clocked_id BIGINT REFERENCES celery_beat_clocked (id) ON DELETE CASCADE,
    args TEXT NOT NULL DEFAULT '[]',
    kwargs TEXT NOT NULL DEFAULT '{}',
    queue TEXT,
    exchange TEXT,
    routing_key TEXT,
    headers TEXT NOT NULL DEFAULT '{}',
    priority INTEGER CHECK (priority BETWEEN 0 AND 255),
    expires TIMESTAMP,
    expire_seconds BIGINT CHECK (expire_seconds >= 0),
    one_off BOOLEAN NOT NULL DEFAULT 0,
    start_time TIMESTAMP,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    last_run_at TIMESTAMP,
    total_run_count BIGINT NOT NULL DEFAULT 0 CHECK (total_run_count >= 0),
    date_changed TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    description TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'db' CHECK (source IN ('db', 'settings', 'code')),
    CHECK ((interval_id IS NOT NULL) + (crontab_id IS NOT NULL) + (solar_id IS NOT NULL)
        + (clocked_id IS NOT NULL) = 1),
    CHECK (clocked_id IS NULL OR one_off)
);
CREATE INDEX celery_periodic_task_enabled ON celery_periodic_task (enabled, task);

-- One row; `version` goes up whenever a periodic task or a schedule is edited (by anyone,
-- raw SQL included), so every beat reloads within a tick. Beat's own firing update (which
-- always adds 1 to total_run_count) does not count as an edit.
CREATE TABLE celery_beat_change (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    changed_at TIMESTAMP NOT NULL
);
INSERT INTO celery_beat_change (id, version, changed_at) VALUES (1, 0, CURRENT_TIMESTAMP);

CREATE TRIGGER celery_periodic_task_inserted AFTER INSERT ON celery_periodic_task
BEGIN
    UPDATE celery_beat_change SET version = version + 1, changed_at = CURRENT_TIMESTAMP WHERE id = 1;
END;
CREATE TRIGGER celery_periodic_task_deleted AFTER DELETE ON celery_periodic_task
BEGIN
    UPDATE celery_beat_change SET version = version + 1, changed_at = CURRENT_TIMESTAMP WHERE id = 1;
END;
-- Beat's own firing update always adds 1 to total_run_count; every other update (the admin,
-- SQL, resetting last_run_at) counts as an edit.
CREATE TRIGGER celery_periodic_task_edited AFTER UPDATE ON celery_periodic_task
    WHEN NEW.total_run_count = OLD.total_run_count
BEGIN
    UPDATE celery_beat_change SET version = version + 1, changed_at = CURRENT_TIMESTAMP WHERE id = 1;
END;
CREATE TRIGGER celery_beat_interval_edited AFTER UPDATE ON celery_beat_interval
BEGIN
    UPDATE celery_beat_change SET version = version + 1, changed_at = CURRENT_TIMESTAMP WHERE id = 1;
END;
CREATE TRIGGER celery_beat_crontab_edited AFTER UPDATE ON celery_beat_crontab
BEGIN
    UPDATE celery_beat_change SET version = version + 1, changed_at = CURRENT_TIMESTAMP WHERE id = 1;
END;
CREATE TRIGGER celery_beat_solar_edited AFTER UPDATE ON celery_beat_solar
BEGIN
    UPDATE celery_beat_change SET version = version + 1, changed_at = CURRENT_TIMESTAMP WHERE id = 1;
END;
CREATE TRIGGER celery_beat_clocked_edited AFTER UPDATE ON celery_beat_clocked
BEGIN
    UPDATE celery_beat_change SET version = version + 1, changed_at = CURRENT_TIMESTAMP WHERE id = 1;
END;

-- One row per firing, keyed by (periodic task, scheduled time): the unique key is what makes
-- any number of beat processes enqueue each firing once.
CREATE TABLE celery_beat_firing (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    periodic_task_id BIGINT NOT NULL REFERENCES celery_periodic_task (id) ON DELETE CASCADE,
    scheduled_at TIMESTAMP NOT NULL,
    fired_at TIMESTAMP NOT NULL,
    task_id TEXT NOT NULL,
    beat TEXT NOT NULL,
    UNIQUE (periodic_task_id, scheduled_at)
);
CREATE INDEX celery_beat_firing_fired_at ON celery_beat_firing (fired_at);
