//! Parsed workflow definitions, cached by their content-addressed id.
//!
//! Runs store a definition id; the YAML is parsed (and validated) once per
//! executor process, not once per message. Definitions are immutable, so a
//! cached entry never goes stale; the cache is bounded by simply starting
//! over when it grows past its capacity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::PgConnection;
use uuid::Uuid;
use weft_common::Workflow;
use weft_store::runs;

use crate::error::EngineError;

/// A bounded map from definition id to parsed workflow.
#[derive(Debug)]
pub(crate) struct Catalog {
    entries: Mutex<HashMap<Uuid, Arc<Workflow>>>,
    capacity: usize,
}

impl Catalog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The parsed workflow of a definition, from the cache or the database.
    pub(crate) async fn get(
        &self,
        conn: &mut PgConnection,
        id: Uuid,
    ) -> Result<Arc<Workflow>, EngineError> {
        if let Some(found) = self.lock().get(&id) {
            return Ok(Arc::clone(found));
        }
        let (source, origin) = runs::definition(conn, id).await?;
        let workflow = Workflow::parse_stored(&source, &origin).map_err(|diagnostics| {
            EngineError::InvalidDefinition {
                id,
                detail: diagnostics.to_string(),
            }
        })?;
        let workflow = Arc::new(workflow);
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(id, Arc::clone(&workflow));
        Ok(workflow)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Workflow>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
