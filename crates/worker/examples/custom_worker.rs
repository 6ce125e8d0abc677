//! A worker binary with a custom action next to the built-ins.
//!
//! ```sh
//! cargo run -p weft-worker --example custom_worker
//! ```
//! then submit a workflow with `action: word_count`.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_worker::{ActionContext, ActionError, ActionRegistry, WorkerConfig};

async fn word_count(ctx: ActionContext) -> Result<Value, ActionError> {
    let text = ctx
        .input
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| ActionError::bad_input("word_count", "text", "must be a string"))?;
    Ok(json!({ "words": text.split_whitespace().count(), "chars": text.chars().count() }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut actions = ActionRegistry::with_builtins();
    actions.register("word_count", word_count);
    let mut config = WorkerConfig::default();
    if let Ok(url) = std::env::var("WEFT_AMQP_URL") {
        config.bus.url = url;
    }
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        trigger.cancel();
    });
    weft_worker::run(config, actions, shutdown).await?;
    Ok(())
}
