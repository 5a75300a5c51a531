DROP TABLE celery_chordcounter;
