//! Every workflow in `workflows/` runs to completion under an executor and
//! a worker and ends with the status its first line announces
//! (`# expect: succeeded` or `# expect: failed`).

use std::time::Duration;

use serde_json::json;
use weft_tests::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_ends_as_it_announces() {
    let stack = Stack::start(StackOptions::default()).expect("stack");
    let pool = stack.pool().await.expect("pool");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("workflows/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let yaml = std::fs::read_to_string(&path).expect("read");
        // Sub-workflows live in `workflows/children/`: each is run by the
        // example that starts it.
        let expected = yaml
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} does not start with `# expect:`", path.display()))
            .trim()
            .to_owned();
        let origin = path.display().to_string();
        // As `weft submit FILE` does: with the files its `workflow:`
        // tasks start.
        let id = weft_tests::submit_file(&pool, &path, json!({}))
            .await
            .expect("submit");
        runs.push((origin, expected, id));
    }
    assert!(runs.len() >= 5, "only {} examples", runs.len());
    for (origin, expected, id) in runs {
        let run = stack
            .wait(&pool, id, Duration::from_secs(60))
            .await
            .expect("finishes");
        assert_eq!(
            run.status.as_str(),
            expected,
            "{origin} ended {} ({:?})",
            run.status,
            run.error
        );
        let mut conn = pool.acquire().await.expect("conn");
        let violations = weft_store::audit::audit(&mut conn, Some(id), 60.0)
            .await
            .expect("audit");
        assert!(violations.is_empty(), "{origin}: {violations:#?}");
    }
}
