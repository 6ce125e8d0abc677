//! What the CLI shows about a run — and later the HTTP API and the web UI
//! — read by one query layer, as serialisable facts, so the three never
//! disagree. Rendering (tables, text) belongs to the callers.
//!
//! - [`explain`] — why a run and each of its tasks are where they are.

pub mod explain;
