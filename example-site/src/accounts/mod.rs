//! Accounts: signing up, and the welcome email that follows.

pub mod tasks;
pub mod views;
