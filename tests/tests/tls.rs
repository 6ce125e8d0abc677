//! TLS to both services, end to end. The test makes a CA and a server
//! certificate for `localhost` (rcgen), starts a private
//! PostgreSQL that accepts TCP connections over TLS only and a private
//! RabbitMQ node whose only AMQP listener is TLS, and runs a workflow
//! through `weft executor` and `weft worker` processes given
//! `sslmode=verify-full&sslrootcert=` and `amqps://` with
//! `WEFT_AMQP_CA_FILE`. A certificate of another CA, or one that does not
//! name the host connected to (127.0.0.1), is refused by both, with a
//! message saying what failed and what to set; `sslmode=verify-ca` checks
//! the CA and not the name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use weft_bus::{Bus, BusConfig};
use weft_common::WorkflowStatus;
use weft_tests::cli::{Cli, failed, ok};
use weft_tests::private::{PrivatePostgres, PrivateRabbit, ServerOptions, ServerTls};
use weft_tests::process::Daemon;
use weft_tests::{Stack, StackOptions};

const WORKFLOW: &str = r#"
name: over-tls
tasks:
  first: { action: echo, input: { n: 1 } }
  second: { needs: [first], action: echo, input: { n: "{{ tasks.first.result.n + 1 }}" } }
output: { n: "{{ tasks.second.result.n }}" }
"#;

/// A directory of the test's own, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("weft-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&path).expect("a temporary directory");
        Self(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("writing a PEM file");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, and a server certificate it signed for `localhost` (not for
/// 127.0.0.1); writes `<name>-ca.pem`, `<name>-server.pem` and
/// `<name>-server.key`.
fn pki(dir: &Dir, name: &str) -> ServerTls {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("weft test CA {name}"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
    let issuer = Issuer::new(ca, ca_key);

    let mut server =
        CertificateParams::new(vec!["localhost".to_owned()]).expect("server parameters");
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().expect("a server key");
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .expect("the server certificate");
    ServerTls {
        ca: dir.write(&format!("{name}-ca.pem"), &ca_cert.pem()),
        cert: dir.write(&format!("{name}-server.pem"), &server_cert.pem()),
        key: dir.write(&format!("{name}-server.key"), &server_key.serialize_pem()),
    }
}

/// `url` naming the database of `stack_url` (the stack made its own).
fn replace_database(url: &str, stack_url: &str) -> String {
    let name = stack_url
        .split('?')
        .next()
        .and_then(|base| base.rsplit_once('/'))
        .map(|(_, name)| name)
        .expect("a database name");
    url.replacen("/postgres?", &format!("/{name}?"), 1)
}

fn database_url(pg: &PrivatePostgres, host: &str, mode: &str, ca: &Path) -> String {
    format!(
        "postgres://postgres@{host}:{}/postgres?sslmode={mode}&sslrootcert={}",
        pg.port(),
        ca.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_over_tls_to_both_services_and_another_ca_is_refused() {
    let dir = Dir::new();
    let tls = pki(&dir, "good");
    let other = pki(&dir, "other");
    let tls_only = || ServerOptions {
        tls: Some(tls.clone()),
        netns: None,
    };
    let pg = PrivatePostgres::start_with(tls_only()).expect("a private PostgreSQL with TLS");
    let rabbit = PrivateRabbit::start_with(tls_only()).expect("a private RabbitMQ with TLS");
    let amqp_url = format!("amqps://guest:guest@localhost:{}/%2f", rabbit.port());
    let stack = Stack::start(StackOptions {
        database_url: Some(database_url(&pg, "localhost", "verify-full", &tls.ca)),
        amqp_url: Some(amqp_url.clone()),
        ..StackOptions::bare()
    })
    .expect("a stack over TLS");
    let pool = stack.pool().await.expect("pool");

    // The daemons as an operator runs them: the CA through the
    // environment, the URLs as given.
    let ca = tls.ca.display().to_string();
    let env = [
        ("WEFT_DATABASE_URL", stack.database_url.as_str()),
        ("WEFT_AMQP_URL", amqp_url.as_str()),
        ("WEFT_AMQP_CA_FILE", ca.as_str()),
    ];
    let _executor = Daemon::start("executor", &["executor"], &env).expect("executor");
    let _worker = Daemon::start("worker", &["worker"], &env).expect("worker");
    let id = stack
        .submit(&pool, WORKFLOW, json!({}))
        .await
        .expect("submit");
    let run = stack
        .wait(&pool, id, Duration::from_secs(120))
        .await
        .expect("the run ends");
    assert_eq!(run.status, WorkflowStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!({ "n": 2 })));
    assert!(
        weft_tests::violations(&pool, id).await.is_empty(),
        "audit of {id}"
    );

    // The servers took nothing but TLS, so the run's messages and
    // statements crossed TLS: a plain connection to either is refused.
    let plain_db = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port()
    );
    let refused = weft_store::connect(&weft_store::DbConfig {
        url: plain_db,
        ..weft_store::DbConfig::default()
    })
    .await
    .expect_err("a connection without TLS is refused");
    assert!(
        refused.to_string().contains("no encryption"),
        "the server's own words on a plain connection: {refused}"
    );
    let plain_amqp = format!("amqp://guest:guest@127.0.0.1:{}/%2f", rabbit.port());
    Bus::try_connect(BusConfig {
        url: plain_amqp,
        ..BusConfig::default()
    })
    .await
    .expect_err("AMQP without TLS to the TLS port is refused");

    // A CLI command over TLS; then with another CA, or by a name the
    // certificate does not hold: refused, saying why. `verify-ca` does
    // not check the name.
    let cli = Cli::new(&stack);
    let database = |host, mode, ca| {
        let url = database_url(&pg, host, mode, ca);
        replace_database(&url, &stack.database_url)
    };
    let status = |url: &str| cli.run(&["status", &id.to_string(), "--database-url", url]);
    ok(&status(&stack.database_url));
    ok(&status(&database("127.0.0.1", "verify-ca", &tls.ca)));
    let said = failed(&status(&database("localhost", "verify-full", &other.ca)));
    assert!(
        said.contains("cannot connect to PostgreSQL at postgres://postgres@localhost")
            && said
                .contains("TLS: the server's certificate is not signed by a CA this client trusts")
            && said.contains("sslrootcert"),
        "{said}"
    );
    let said = failed(&status(&database("127.0.0.1", "verify-full", &tls.ca)));
    assert!(
        said.contains("TLS: the server's certificate does not name the host in the URL"),
        "{said}"
    );

    // RabbitMQ: another CA, no CA (the system's roots do not know ours),
    // a name the certificate does not hold, a file that holds no
    // certificate, and none.
    let unknown = "not signed by a CA this client trusts";
    let by_ip = format!("amqps://guest:guest@127.0.0.1:{}/%2f", rabbit.port());
    for (url, ca_file, expected) in [
        (&amqp_url, Some(other.ca.clone()), unknown),
        (&amqp_url, None, unknown),
        (&by_ip, Some(tls.ca.clone()), "does not name the host"),
        (&amqp_url, Some(tls.key.clone()), "no certificate in it"),
        (&amqp_url, Some(dir.0.join("missing.pem")), "No such file"),
    ] {
        let error = Bus::try_connect(BusConfig {
            url: url.clone(),
            ca_file: ca_file.clone(),
            ..BusConfig::default()
        })
        .await
        .expect_err("refused");
        let said = error.to_string();
        assert!(said.contains(expected), "{url} with {ca_file:?}: {said}");
    }
    pool.close().await;
    drop(stack);
}
