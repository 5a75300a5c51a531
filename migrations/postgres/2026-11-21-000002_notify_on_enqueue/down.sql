DROP TRIGGER celery_message_notify ON celery_message;
DROP FUNCTION celery_message_notify();
