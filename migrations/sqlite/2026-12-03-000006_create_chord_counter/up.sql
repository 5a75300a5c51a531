-- Chord joins on the database backend (django-celery-results' ChordCounter): the publisher
-- inserts a row before sending the header; each finished header task decrements `count` in
-- the transaction that stores its result; the one that brings it to 0 sends the body, then
-- deletes the row.
CREATE TABLE celery_chordcounter (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    group_id TEXT NOT NULL UNIQUE,
    sub_tasks TEXT NOT NULL,
    count BIGINT NOT NULL
);
