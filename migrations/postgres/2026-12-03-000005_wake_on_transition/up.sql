-- Wake-ups on a transition only. A NOTIFY takes a database-wide lock from its transaction's
-- pre-commit to the end of its commit, so a notification per enqueue lines every enqueuer up
-- behind one lock (about 4,000 commits/s on two cores, whatever else is done). Now an enqueue
-- notifies only while a worker is waiting for one:
--
-- - a fetcher that finds nothing arms the row for 5 seconds (bumping `version`) before it
--   waits, and arms it again while it keeps waiting (at most once a second: see ARM in
--   celery-web/src/broker/database/wakeup.rs);
-- - the trigger notifies only while the row is armed, with the armed version as payload;
-- - the listener that receives the notification disarms that version (a later arming, by
--   another worker, stays armed).
--
-- Enqueuers only read the row: no lock, no write, so they never wait on each other, on a
-- worker, or on a site's long transaction that enqueued. While workers are busy, or when none
-- runs (an arming lapses after 5 seconds: a killed worker leaves nothing armed), an enqueue
-- costs one read of a one-row table. A wake-up missed in a race (an enqueue that read the row
-- just before a fetcher armed it) is caught by the fetcher's polling.
--
-- UNLOGGED: arming writes no WAL. A crash empties the table; a missing row counts as armed
-- (every enqueue notifies, as before) until a listener connects and puts it back.
CREATE UNLOGGED TABLE celery_wakeup (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    armed_until TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL
);
INSERT INTO celery_wakeup (id, armed_until, version) VALUES (1, '-infinity', 0);

CREATE OR REPLACE FUNCTION celery_message_notify() RETURNS trigger AS $$
DECLARE
    wakeup RECORD;
BEGIN
    SELECT armed_until > clock_timestamp() AS armed, version INTO wakeup
        FROM celery_wakeup WHERE id = 1;
    IF NOT FOUND THEN
        PERFORM pg_notify('celery_message', '');
    ELSIF wakeup.armed THEN
        PERFORM pg_notify('celery_message', wakeup.version::text);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
