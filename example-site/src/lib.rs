//! An actix-web site that uses celery-web: tasks in several apps, handlers that enqueue them,
//! pages that show their results, a signup that commits a row and a task together, and a
//! manage command (`example-site celery worker`, ...).

pub mod accounts;
pub mod demo;
pub mod manage;
pub mod reports;
pub mod schema;
pub mod web;
