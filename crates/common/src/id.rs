//! Typed identifiers. Every id is a UUID wrapped in its own newtype so that a
//! task execution id can never be passed where a workflow execution id is
//! expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// One submitted run of a workflow (`workflow_executions.id`).
    WorkflowExecutionId
);
id_type!(
    /// One task of one run (`task_executions.id`), unique per (run, task name).
    TaskExecutionId
);
id_type!(
    /// One dispatched unit of work: a task item × attempt (`executions.id`).
    ExecutionId
);
id_type!(
    /// One message on the bus; lets consumers recognise a duplicate.
    MessageId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_display_and_json() {
        let id = ExecutionId::new();
        assert_eq!(id.to_string().parse::<ExecutionId>().ok(), Some(id));
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(json, format!("\"{id}\""));
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let a = WorkflowExecutionId::new();
        let b = WorkflowExecutionId::new();
        assert!(a < b);
    }
}
