CREATE OR REPLACE FUNCTION celery_message_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('celery_message', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TABLE celery_wakeup;
