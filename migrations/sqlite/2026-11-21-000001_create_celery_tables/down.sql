DROP TABLE celery_taskresult;
DROP TABLE celery_dead_message;
DROP TABLE celery_message;
