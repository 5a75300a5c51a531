//! Canvas: the workflow links Celery carries in a task message (`chain`, `callbacks`,
//! `errbacks`, `chord`) and what a worker does with them when a task ends.
//!
//! - [`follow_ups`]: turning the signature dicts of a finished task's message into the
//!   messages Celery's worker would send next (the chain's next link with the result
//!   prepended, the `link` callbacks, the `link_error` errbacks), with `parent_id`,
//!   `root_id` and `group` set as Celery sets them.
//! - [`chord`]: one header task's part of a chord, and the join that fires the body once,
//!   with Celery's `ChordError` when a member failed.
//!
//! - [`workflow`]: building chains, groups and chords in Rust.
//!
//! Both work for messages from either language: the wire format is Celery's
//! (protocol v2, signatures as JSON dicts).

pub mod chord;
pub mod follow_ups;
pub mod workflow;

pub use chord::{ChordPart, ChordReady};
pub use workflow::{chain, chord, group, Chain, Chord, Group, GroupResult};
