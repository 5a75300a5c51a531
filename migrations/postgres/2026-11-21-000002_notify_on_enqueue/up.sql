-- Wakes idle workers (LISTEN celery_message) as soon as a message is enqueued, by any
-- process, including inside a site's own transaction (the notification is sent at commit).
CREATE FUNCTION celery_message_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('celery_message', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER celery_message_notify
    AFTER INSERT ON celery_message
    FOR EACH STATEMENT EXECUTE FUNCTION celery_message_notify();

-- A queue table turns over all its rows; vacuum it early so claims don't wade through dead
-- index entries after a burst.
ALTER TABLE celery_message SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);
