//! Reading a workflow file and showing its diagnostics.

use std::path::Path;

use anyhow::Context as _;
use weft_common::Workflow;

/// Reads and validates a workflow file. `Ok(None)`: it is invalid, and its
/// diagnostics were printed to stderr.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<(Workflow, String)>> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match Workflow::parse(&source, &path.display().to_string()) {
        Ok(workflow) => Ok(Some((workflow, source))),
        Err(diagnostics) => {
            eprintln!("{:?}", miette::Report::new(diagnostics));
            Ok(None)
        }
    }
}
