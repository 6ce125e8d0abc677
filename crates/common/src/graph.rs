//! A workflow's DAG as data: one node per task, one edge per need. What
//! `GET /api/v1/runs/{run}/graph` and `POST /api/v1/workflows/graph`
//! answer, and what the web UI lays out; `weft graph` draws the same
//! workflow as text.

use serde::{Deserialize, Serialize};

use crate::state::Trigger;
use crate::workflow::Workflow;

/// A workflow's tasks and the needs between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Graph {
    /// The workflow's name.
    pub workflow: String,
    /// Its tasks, in the workflow's order.
    pub nodes: Vec<GraphNode>,
    /// One per need: from the needed task to the task that needs it.
    pub edges: Vec<GraphEdge>,
}

/// One task of a [`Graph`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GraphNode {
    /// The task's name.
    pub name: String,
    /// Its action (`workflow` for a task that starts a child run).
    pub action: String,
    /// The tasks it needs.
    pub needs: Vec<String>,
    /// When it runs, given its needs' outcomes.
    pub trigger: Trigger,
    /// Its `when` condition, if any.
    pub when: Option<String>,
    /// Whether it fans out over items.
    pub with_items: bool,
    /// Items in flight at most, for a fan-out with a limit.
    pub concurrency: Option<u32>,
    /// Whether it is an exit handler (`on_exit:`).
    pub exit_handler: bool,
    /// The file of the child workflow a `workflow:` task starts.
    pub workflow: Option<String>,
}

/// A need: `to` runs after `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GraphEdge {
    /// The needed task.
    pub from: String,
    /// The task that needs it.
    pub to: String,
}

impl Graph {
    /// The graph of `workflow`.
    #[must_use]
    pub fn of(workflow: &Workflow) -> Self {
        let nodes: Vec<GraphNode> = workflow
            .tasks()
            .map(|t| GraphNode {
                name: t.name().to_owned(),
                action: t.action().to_owned(),
                needs: t.needs().to_vec(),
                trigger: t.trigger(),
                when: t.when().map(str::to_owned),
                with_items: t.with_items().is_some(),
                concurrency: t.concurrency(),
                exit_handler: t.is_exit_handler(),
                workflow: t.call().map(|c| c.path().to_owned()),
            })
            .collect();
        let edges = workflow
            .tasks()
            .flat_map(|t| {
                t.needs().iter().map(|need| GraphEdge {
                    from: need.clone(),
                    to: t.name().to_owned(),
                })
            })
            .collect();
        Self {
            workflow: workflow.name().to_owned(),
            nodes,
            edges,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_need_is_an_edge_and_every_task_a_node() {
        let yaml = "name: g\ntasks:\n  a: { action: noop }\n  b: { needs: [a], with_items: [1, 2], concurrency: 1, action: echo }\n  c: { needs: [a, b], trigger: all_done, when: \"{{ true }}\", action: noop }\n";
        let w = Workflow::parse(yaml, "g.yaml").unwrap_or_else(|d| panic!("{d}"));
        let g = Graph::of(&w);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let edges: Vec<(&str, &str)> = g
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str()))
            .collect();
        assert_eq!(edges, [("a", "b"), ("a", "c"), ("b", "c")]);
        assert!(g.nodes[1].with_items);
        assert_eq!(g.nodes[1].concurrency, Some(1));
        assert_eq!(g.nodes[2].trigger, Trigger::AllDone);
        assert_eq!(g.nodes[2].when.as_deref(), Some("{{ true }}"));
        assert!(!g.nodes[0].exit_handler);
    }
}
