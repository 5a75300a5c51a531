//! Periodic tasks: when they fire ([`schedule`]).
//!
//! Modeled on django-celery-beat: interval, crontab, clocked and solar schedules.

pub mod schedule;
