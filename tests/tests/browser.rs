//! The web UI tested as a person would use it, in Debian's headless
//! Chromium driven by `playwright-core` (tests/browser/ui.test.mjs): log in
//! with a token, submit a workflow from the UI (and see a broken one's
//! diagnostics at their lines), watch its DAG turn green live, open a
//! failed task's logs, cancel a running run, at 1280×800 and at 390×844,
//! with no console error; screenshots go to `target/screenshots/`. The
//! UI's pure modules (the DAG layout, the SSE parser) are unit-tested under
//! node in the same run (tests/browser/dag.test.mjs).
//!
//! The stack: PostgreSQL and RabbitMQ with an executor and a worker in
//! process, and `weft_server::serve` on a free port. Set-up, once:
//! `scripts/browser.sh` (Chromium from apt, `npm ci` in tests/browser; no
//! browser is downloaded, and nothing is installed at test time). Without
//! Chromium, node or playwright-core the test says so loudly and passes,
//! unless `WEFT_BROWSER_REQUIRED=1` (as `scripts/test.sh` sets), where it
//! fails.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::Command;
use weft_common::auth::Role;
use weft_tests::server::{TestServer, token};
use weft_tests::{Stack, StackOptions};

/// How long the whole browser script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// The browser the tests drive: `WEFT_CHROMIUM`, else Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("WEFT_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What is missing to run the browser tests, if anything. Nothing is
/// installed or downloaded at test time: `scripts/browser.sh` does that.
fn missing(root: &Path) -> Option<String> {
    let mut missing = Vec::new();
    if !chromium().is_file() {
        missing.push(format!(
            "{} (apt-get install chromium)",
            chromium().display()
        ));
    }
    if which("node").is_none() {
        missing.push("node (apt-get install nodejs)".to_owned());
    }
    if !root
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        missing.push("playwright-core (npm ci in tests/browser)".to_owned());
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Prints a child's output (for the test log) and fails unless it passed.
fn check(what: &str, output: &Output) -> anyhow::Result<()> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- {what}: stdout\n{stdout}\n--- {what}: stderr\n{stderr}");
    if !output.status.success() {
        bail!("{what} failed ({}):\n{stdout}\n{stderr}", output.status);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_works_in_a_real_browser() -> anyhow::Result<()> {
    let root = root();
    if let Some(missing) = missing(&root) {
        let message = format!(
            "\n\n==================== BROWSER TESTS SKIPPED ====================\n\
             missing: {missing}\n\
             run scripts/browser.sh (needs apt-get and npm) to install them\n\
             ===============================================================\n"
        );
        if std::env::var("WEFT_BROWSER_REQUIRED").is_ok_and(|v| v == "1") {
            bail!("{message}(WEFT_BROWSER_REQUIRED=1)");
        }
        eprintln!("{message}");
        return Ok(());
    }

    // The DAG layout and the SSE parser, under node.
    let layout = Command::new("node")
        .args(["--test", "tests/browser/dag.test.mjs"])
        .current_dir(&root)
        .output()
        .await
        .context("running node")?;
    check("the UI's unit tests (node --test)", &layout)?;

    let stack = tokio::task::spawn_blocking(|| Stack::start(StackOptions::default()))
        .await
        .context("starting the stack")??;
    let pool = stack.pool().await?;
    let operator = token(&pool, Role::Operator).await?;
    let viewer = token(&pool, Role::Viewer).await?;
    let server = TestServer::start(&pool).await?;

    let screenshots = root.join("target/screenshots");
    std::fs::create_dir_all(&screenshots)?;
    let mut script = Command::new("node");
    script
        .arg("tests/browser/ui.test.mjs")
        .current_dir(&root)
        .env("BASE_URL", &server.base)
        .env("TOKEN", &operator)
        .env("VIEWER_TOKEN", &viewer)
        .env("CHROMIUM", chromium())
        .env("SCREENSHOTS", &screenshots)
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, script.output())
        .await
        .with_context(|| format!("the browser script took more than {SCRIPT_TIMEOUT:?}"))?
        .context("running node tests/browser/ui.test.mjs")?;
    drop(server);
    check(
        "the browser tests (node tests/browser/ui.test.mjs)",
        &output,
    )?;
    println!("screenshots in {}", screenshots.display());
    drop(stack);
    Ok(())
}

/// The page and its files are served without a token, with their media
/// types, a content security policy allowing only the server's own files,
/// and cache headers: the page never cached, the files (at URLs carrying a
/// digest of them) for a year, an old digest's not at all; in `--dev` mode
/// the page tells the UI it needs no token. Needs no browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_is_served_embedded_with_types_and_cache_headers() -> anyhow::Result<()> {
    let stack = tokio::task::spawn_blocking(|| Stack::start(StackOptions::bare()))
        .await
        .context("starting the stack")??;
    let pool = stack.pool().await?;
    let server = TestServer::start(&pool).await?;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(server.url(path)).send();
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };

    let page = get("/").await?;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert!(header(&page, "content-security-policy").contains("script-src 'self'"));
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let html = page.text().await?;
    assert!(
        html.contains(r#"<meta name="weft-dev" content="false">"#),
        "not in --dev mode: {html}"
    );
    let main = html
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with("/js/main.js"))
        .context("the page loads /assets/{version}/js/main.js")?
        .to_owned();
    let base = main.trim_end_matches("js/main.js").to_owned();

    for (file, media) in [
        ("js/main.js", "text/javascript; charset=utf-8"),
        ("js/dag.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = get(&format!("{base}{file}")).await?;
        assert_eq!(r.status(), 200, "{file}");
        assert_eq!(header(&r, "content-type"), media, "{file}");
        assert_eq!(
            header(&r, "cache-control"),
            "public, max-age=31536000, immutable",
            "{file}"
        );
    }
    let old = get("/assets/0000000000000000/js/main.js").await?;
    assert_eq!(old.status(), 200);
    assert_eq!(header(&old, "cache-control"), "no-cache");
    let missing = get(&format!("{base}js/nope.js")).await?;
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "content-type"), "application/problem+json");
    // The API still wants a token.
    assert_eq!(get("/api/v1/runs").await?.status(), 401);

    // In --dev mode the page says so, and the UI needs no token.
    let dev = TestServer::with(&pool, |c| c.dev = true).await?;
    let html = http.get(dev.url("/")).send().await?.text().await?;
    assert!(html.contains(r#"<meta name="weft-dev" content="true">"#));
    let me: serde_json::Value = http.get(dev.url("/api/v1/me")).send().await?.json().await?;
    assert_eq!(me["role"], "admin");
    drop((server, dev));
    drop(stack);
    Ok(())
}
