//! The task graph: tasks are nodes, `needs` are edges from a need to the
//! task that needs it. Built only from a workflow whose names resolve; a
//! cycle is reported with every task on it.

use std::collections::{BTreeSet, HashMap};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

/// A validated, acyclic task graph.
#[derive(Debug, Clone)]
pub struct Dag {
    graph: DiGraph<String, ()>,
    index: HashMap<String, NodeIndex>,
    order: Vec<String>,
}

impl Dag {
    /// Builds the graph from `(task, needs)` pairs whose needs all name
    /// tasks of the list. `Err` lists each cycle as the names of its tasks
    /// (a task that needs itself is a cycle of one).
    pub(crate) fn build<'a>(
        tasks: impl IntoIterator<Item = (&'a str, &'a [String])>,
    ) -> Result<Self, Vec<Vec<String>>> {
        let tasks: Vec<(&str, &[String])> = tasks.into_iter().collect();
        let mut graph = DiGraph::new();
        let mut index = HashMap::new();
        for (name, _) in &tasks {
            index.insert((*name).to_owned(), graph.add_node((*name).to_owned()));
        }
        for (name, needs) in &tasks {
            for need in *needs {
                if let (Some(&from), Some(&to)) = (index.get(need.as_str()), index.get(*name)) {
                    graph.update_edge(from, to, ());
                }
            }
        }
        let cycles: Vec<Vec<String>> = petgraph::algo::tarjan_scc(&graph)
            .into_iter()
            .filter(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]))
            .map(|scc| {
                let mut names: Vec<String> = scc.iter().map(|n| graph[*n].clone()).collect();
                names.sort();
                names
            })
            .collect();
        if !cycles.is_empty() {
            return Err(cycles);
        }
        // Kahn's algorithm, taking ready tasks in declaration order so the
        // order is stable and reads like the file.
        let mut remaining: Vec<usize> = graph
            .node_indices()
            .map(|n| graph.neighbors_directed(n, Direction::Incoming).count())
            .collect();
        let mut order = Vec::with_capacity(tasks.len());
        let mut ready: BTreeSet<NodeIndex> = graph
            .node_indices()
            .filter(|n| remaining[n.index()] == 0)
            .collect();
        while let Some(node) = ready.pop_first() {
            order.push(graph[node].clone());
            for next in graph.neighbors_directed(node, Direction::Outgoing) {
                remaining[next.index()] -= 1;
                if remaining[next.index()] == 0 {
                    ready.insert(next);
                }
            }
        }
        Ok(Self {
            graph,
            index,
            order,
        })
    }

    fn names(&self, task: &str, direction: Direction) -> Vec<&str> {
        let Some(&node) = self.index.get(task) else {
            return Vec::new();
        };
        let mut names: Vec<&str> = self
            .graph
            .neighbors_directed(node, direction)
            .map(|n| self.graph[n].as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// Tasks that need nothing, in declaration order.
    #[must_use]
    pub fn roots(&self) -> Vec<&str> {
        self.graph
            .node_indices()
            .filter(|n| {
                self.graph
                    .neighbors_directed(*n, Direction::Incoming)
                    .next()
                    .is_none()
            })
            .map(|n| self.graph[n].as_str())
            .collect()
    }

    /// Tasks that need `task`, sorted by name.
    #[must_use]
    pub fn successors(&self, task: &str) -> Vec<&str> {
        self.names(task, Direction::Outgoing)
    }

    /// Tasks `task` needs, sorted by name.
    #[must_use]
    pub fn needs(&self, task: &str) -> Vec<&str> {
        self.names(task, Direction::Incoming)
    }

    /// Every task, each after all the tasks it needs.
    #[must_use]
    pub fn topological_order(&self) -> &[String] {
        &self.order
    }

    /// Every task `task` depends on, directly or not.
    #[must_use]
    pub fn ancestors(&self, task: &str) -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut stack = self.needs(task);
        while let Some(name) = stack.pop() {
            if seen.insert(name) {
                stack.extend(self.needs(name));
            }
        }
        seen
    }

    /// Whether `candidate` is an ancestor of `task` (a need, or a need of a
    /// need, …). Stops as soon as it finds the path.
    #[must_use]
    pub fn is_ancestor(&self, candidate: &str, task: &str) -> bool {
        match (self.index.get(candidate), self.index.get(task)) {
            (Some(&from), Some(&to)) if from != to => {
                petgraph::algo::has_path_connecting(&self.graph, from, to, None)
            }
            _ => false,
        }
    }

    /// Number of tasks.
    #[must_use]
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are no tasks.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dag(edges: &[(&str, &[&str])]) -> Result<Dag, Vec<Vec<String>>> {
        let owned: Vec<(String, Vec<String>)> = edges
            .iter()
            .map(|(n, ns)| {
                (
                    (*n).to_owned(),
                    ns.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect();
        Dag::build(owned.iter().map(|(n, ns)| (n.as_str(), ns.as_slice())))
    }

    #[test]
    fn a_diamond_has_one_root_and_a_join() {
        let d = dag(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]).unwrap();
        assert_eq!(d.roots(), ["a"]);
        assert_eq!(d.successors("a"), ["b", "c"]);
        assert_eq!(d.needs("d"), ["b", "c"]);
        assert_eq!(d.topological_order(), ["a", "b", "c", "d"]);
        assert_eq!(
            d.ancestors("d").into_iter().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn every_task_on_a_cycle_is_named() {
        let cycles = dag(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]).unwrap_err();
        assert_eq!(cycles, [vec!["a", "b", "c"]]);
        let own = dag(&[("a", &["a"])]).unwrap_err();
        assert_eq!(own, [vec!["a"]]);
    }

    proptest! {
        /// Random DAGs (edges only from lower to higher index) are accepted and
        /// ordered; adding one back edge along a path makes them rejected.
        #[test]
        fn random_dags_are_ordered_and_back_edges_rejected(
            n in 2usize..30,
            edges in proptest::collection::vec((0usize..30, 0usize..30), 0..80),
        ) {
            let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
            let mut needs: Vec<Vec<String>> = vec![Vec::new(); n];
            for (a, b) in edges {
                let (a, b) = (a % n, b % n);
                if a < b && !needs[b].contains(&names[a]) {
                    needs[b].push(names[a].clone());
                }
            }
            let d = Dag::build(names.iter().map(String::as_str).zip(needs.iter().map(Vec::as_slice))).unwrap();
            let pos = |t: &str| d.topological_order().iter().position(|x| x == t).unwrap();
            for (i, ns) in needs.iter().enumerate() {
                for need in ns {
                    prop_assert!(pos(need) < pos(&names[i]));
                }
            }
            // A back edge from the last task to the first closes a cycle if a
            // path first → last exists.
            if d.ancestors(&names[n - 1]).contains(names[0].as_str()) {
                needs[0].push(names[n - 1].clone());
                let cycles = Dag::build(names.iter().map(String::as_str).zip(needs.iter().map(Vec::as_slice))).unwrap_err();
                prop_assert!(cycles.iter().any(|c| c.contains(&names[0]) && c.contains(&names[n - 1])));
            }
        }
    }
}
