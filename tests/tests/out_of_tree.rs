//! `weft-worker` as a dependency of another project: a crate outside this
//! workspace, with a `path` dependency on `crates/worker`, builds the
//! documented custom worker (`crates/worker/examples/custom_worker.rs`,
//! copied as its `main.rs`). `cargo check --offline` with this workspace's
//! target directory and `Cargo.lock`: nothing is downloaded, the compiled
//! dependencies are reused.

use std::path::Path;
use std::process::Command;

#[test]
fn a_crate_outside_the_workspace_builds_a_custom_worker() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let dir = std::env::temp_dir().join(format!("weft-custom-worker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).expect("a temp dir");
    let manifest = format!(
        r#"[package]
name = "my-weft-worker"
version = "0.1.0"
edition = "2024"
publish = false

# Its own workspace: not a member of Weft's.
[workspace]

[dependencies]
weft-worker = {{ path = "{}" }}
tokio = {{ version = "1", features = ["macros", "rt-multi-thread"] }}
serde_json = "1"
"#,
        workspace.join("crates/worker").display()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("Cargo.toml");
    std::fs::copy(workspace.join("Cargo.lock"), dir.join("Cargo.lock")).expect("Cargo.lock");
    std::fs::copy(
        workspace.join("crates/worker/examples/custom_worker.rs"),
        dir.join("src/main.rs"),
    )
    .expect("main.rs");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), Into::into);
    let out = Command::new(env!("CARGO"))
        .args(["check", "--offline", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("cargo runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "the out-of-tree crate does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
