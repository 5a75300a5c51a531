-- The site's own table: people who signed up. A signup and its welcome email are committed
-- together (the task is enqueued inside the same transaction).
CREATE TABLE signups (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL
);
