DROP TABLE celery_beat_firing;
DROP TABLE celery_beat_change;
DROP TABLE celery_periodic_task;
DROP TABLE celery_beat_clocked;
DROP TABLE celery_beat_solar;
DROP TABLE celery_beat_crontab;
DROP TABLE celery_beat_interval;
