//! A worker binary with a custom action next to the built-ins.
//!
//! It takes the same flags and environment as `weft worker`
//! (`--queue`/`WEFT_WORKER_QUEUES`, `--concurrency`, `--amqp-url`/
//! `WEFT_AMQP_URL`, `RUST_LOG`, …). Run it on a pool of its own, so that
//! its tasks never land on a stock worker that does not know the action:
//!
//! ```sh
//! cargo run -p weft-worker --example custom_worker -- --queue text
//! ```
//!
//! then submit a workflow whose task says `action: word_count` and
//! `queue: text`.

use serde_json::{Value, json};
use weft_worker::{ActionContext, ActionError, ActionRegistry};

async fn word_count(ctx: ActionContext) -> Result<Value, ActionError> {
    let text = ctx
        .input
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| ActionError::bad_input("word_count", "text", "must be a string"))?;
    Ok(json!({ "words": text.split_whitespace().count(), "chars": text.chars().count() }))
}

#[tokio::main]
async fn main() -> Result<(), weft_worker::WorkerError> {
    let mut actions = ActionRegistry::with_builtins();
    actions.register("word_count", word_count);
    weft_worker::run_from_env(actions).await
}
