//! `weft token create|list|revoke` from the outside, and what the server
//! makes of the tokens: the secret is printed once and never listed; a
//! revoked token is refused by the API.

use std::process::Output;

use serde_json::Value;
use weft_tests::cli::{Cli, Server, stderr, stdout};
use weft_tests::{Stack, StackOptions};

#[test]
fn tokens_are_created_listed_and_revoked() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    let server = Server::start(&stack, false);
    let url = server.url.clone();

    // create: the secret alone on stdout, how to use it on stderr.
    let out = Cli::new(&stack).run(&["token", "create", "--role", "viewer", "--name", "ci"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let viewer = stdout(&out).trim().to_owned();
    assert!(
        viewer.starts_with("weft_") && viewer.len() == 69,
        "{viewer}"
    );
    assert!(
        stderr(&out).contains(&format!("export WEFT_TOKEN={viewer}")),
        "{}",
        stderr(&out)
    );
    // --json: the row and the secret, once.
    let created: Value = serde_json::from_str(&Cli::new(&stack).ok(&[
        "token",
        "create",
        "--role",
        "admin",
        "--name",
        "root",
        "--expires",
        "30d",
        "--json",
    ]))
    .expect("JSON");
    assert_eq!(created["role"], "admin");
    assert_eq!(created["name"], "root");
    assert!(created["expires_at"].is_string(), "{created}");
    let admin = created["token"].as_str().expect("the secret").to_owned();

    // The tokens work against the server, each for its role.
    let me = |token: &str| -> Output {
        Cli::new(&stack).run(&["list", "--json", "--server", &url, "--token", token])
    };
    assert!(me(&viewer).status.success(), "{}", stderr(&me(&viewer)));
    assert!(me(&admin).status.success());

    // list: both, newest first, never a secret.
    let listed = Cli::new(&stack).ok(&["token", "list", "--json"]);
    assert!(!listed.contains(&viewer) && !listed.contains(&admin));
    assert!(!listed.contains("\"token\""), "{listed}");
    let rows: Value = serde_json::from_str(&listed).expect("JSON");
    let names: Vec<&str> = rows
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["root", "ci"]);
    let table = Cli::new(&stack).ok(&["token", "list"]);
    assert!(table.contains("ci") && table.contains("active"), "{table}");
    assert!(!table.contains(&viewer), "{table}");

    // revoke: the server refuses the token from then on.
    let id = rows[1]["id"].as_str().expect("an id").to_owned();
    let revoked = Cli::new(&stack).ok(&["token", "revoke", &id]);
    assert!(
        revoked.starts_with(&format!("token {id} (ci, viewer) revoked at ")),
        "{revoked}"
    );
    let out = me(&viewer);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refused the token (unknown, revoked or expired)"),
        "{}",
        stderr(&out)
    );
    assert!(me(&admin).status.success(), "the other token still works");
    let table = Cli::new(&stack).ok(&["token", "list"]);
    assert!(table.contains("revoked"), "{table}");

    // Revoking twice is no error; an unknown id is.
    assert!(
        Cli::new(&stack)
            .run(&["token", "revoke", &id])
            .status
            .success()
    );
    let out = Cli::new(&stack).run(&["token", "revoke", "00000000-0000-7000-8000-000000000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no token with id"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_token_flags_are_refused_before_anything_is_stored() {
    let stack = Stack::start(StackOptions::bare()).expect("stack");
    for (args, expected) in [
        (
            vec!["token", "create", "--role", "root"],
            "`root` is not a role (one of: viewer, operator, admin)",
        ),
        (
            vec![
                "token",
                "create",
                "--role",
                "viewer",
                "--expires",
                "2020-01-01T00:00:00Z",
            ],
            "is not in the future",
        ),
        (
            vec!["token", "create", "--role", "viewer", "--expires", "soon"],
            "RFC 3339",
        ),
        (vec!["token", "revoke", "not-an-id"], "not-an-id"),
    ] {
        let out = Cli::new(&stack).run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        Cli::new(&stack).ok(&["token", "list", "--json"]).trim(),
        "[]"
    );
}
