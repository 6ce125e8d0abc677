//! `--config FILE`: every setting of the README's table in one YAML file,
//! read into one typed struct ([`Settings`]). A key is a long flag's name
//! with `_` for `-` (`queue`, `executor_concurrency`, …).
//!
//! The file fills in what flags and environment left unset: clap reports
//! where each value came from, and only a default is replaced. A key the
//! file does not know is an error with a "did you mean" hint, never
//! silently ignored; a key the command does not use (`concurrency` for
//! `weft status`) is ignored, so one file serves every command.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;

use anyhow::{Context as _, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;
use serde_json::{Map, Value};
use weft_common::ResultLimit;
use weft_worker::{LogFormat, WorkerArgs};

use crate::cli::Command;
use crate::commands::daemons::{ExecutorTuning, OpsArgs, RedispatchArgs};
use crate::config::{AmqpArgs, DbArgs};

/// The settings a config file may hold; each is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    amqp_url: Option<String>,
    /// `quorum` or `classic`.
    queue_type: Option<String>,
    amqp_ca_file: Option<std::path::PathBuf>,
    log_format: Option<FileLogFormat>,
    metrics_addr: Option<SocketAddr>,
    executor_concurrency: Option<usize>,
    executor_prefetch: Option<u16>,
    executor_batches: Option<usize>,
    executor_flush_queue: Option<NonZeroUsize>,
    reaper_interval: Option<f64>,
    heartbeat_grace: Option<f64>,
    deadline_grace: Option<f64>,
    redispatch_after: Option<f64>,
    /// A duration such as `30d`.
    retention: Option<String>,
    /// Worker pools: a list, or one name.
    queue: Option<OneOrMany>,
    concurrency: Option<usize>,
    heartbeat_interval: Option<f64>,
    start_report_delay: Option<f64>,
    max_result_bytes: Option<usize>,
    /// `weft server --addr` and `weft dev --server-addr`.
    server_addr: Option<SocketAddr>,
    max_body: Option<usize>,
    request_timeout: Option<f64>,
}

/// Every key of [`Settings`], for the "did you mean" hint (a test checks
/// the two agree).
const KEYS: &[&str] = &[
    "database_url",
    "database_max_connections",
    "amqp_url",
    "queue_type",
    "amqp_ca_file",
    "log_format",
    "metrics_addr",
    "executor_concurrency",
    "executor_prefetch",
    "executor_batches",
    "executor_flush_queue",
    "reaper_interval",
    "heartbeat_grace",
    "deadline_grace",
    "redispatch_after",
    "retention",
    "queue",
    "concurrency",
    "heartbeat_interval",
    "start_report_delay",
    "max_result_bytes",
    "server_addr",
    "max_body",
    "request_timeout",
];

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FileLogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Settings {
    /// Parses a config file's text; `path` names it in errors.
    pub(crate) fn parse(path: &Path, text: &str) -> anyhow::Result<Self> {
        let shown = path.display();
        let map: Map<String, Value> = if text.trim().is_empty() {
            Map::new()
        } else {
            serde_saphyr::from_str(text).with_context(|| {
                format!("the config file {shown} is not a YAML mapping of settings")
            })?
        };
        if let Some(unknown) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
            bail!(
                "the config file {shown} has an unknown setting `{unknown}`{}",
                hint(unknown)
            );
        }
        let settings: Self = serde_json::from_value(Value::Object(map))
            .with_context(|| format!("the config file {shown} has a bad value"))?;
        settings.check(&shown.to_string())?;
        Ok(settings)
    }

    /// Values whose type is right but which clap's parsers would refuse.
    fn check(&self, shown: &str) -> anyhow::Result<()> {
        if let Some(retention) = &self.retention {
            crate::commands::prune::positive_duration(retention)
                .map_err(|e| anyhow::anyhow!("the config file {shown}: `retention`: {e}"))?;
        }
        if let Some(queue_type) = &self.queue_type {
            queue_type
                .parse::<weft_bus::QueueType>()
                .map_err(|e| anyhow::anyhow!("the config file {shown}: `queue_type`: {e}"))?;
        }
        if self.max_body == Some(0) {
            bail!("the config file {shown}: `max_body` must be at least 1 byte, not 0");
        }
        if let Some(bytes) = self.max_result_bytes {
            ResultLimit::new(bytes)
                .map_err(|e| anyhow::anyhow!("the config file {shown}: `max_result_bytes`: {e}"))?;
        }
        Ok(())
    }
}

/// " (did you mean `x`?)" for the closest known key, or a pointer to the
/// list when none is close.
fn hint(unknown: &str) -> String {
    let closest = KEYS
        .iter()
        .map(|k| (strsim::jaro_winkler(unknown, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, key)) => format!(" (did you mean `{key}`?)"),
        None => format!("; the settings are: {}", KEYS.join(", ")),
    }
}

/// Reads the command's `--config` file, if any, and fills in the settings
/// that flags and environment left at their defaults. `matches` are the
/// whole command line's.
pub(crate) fn layer(command: &mut Command, matches: &ArgMatches) -> anyhow::Result<()> {
    let Some(file) = command.config_args().map(|c| c.read()).transpose()? else {
        return Ok(());
    };
    let Some((path, text)) = file else {
        return Ok(());
    };
    let Some((_, given)) = matches.subcommand() else {
        return Ok(());
    };
    let settings = Settings::parse(&path, &text)?;
    let layer = Layer { given, settings };
    match command {
        Command::Graph(_) => {}
        Command::Validate(a) => layer.db(&mut a.db),
        Command::Submit(a) => layer.db(&mut a.db),
        Command::Explain(a) => {
            layer.db(&mut a.db);
            layer.amqp(&mut a.amqp);
        }
        Command::Workers(a) => layer.db(&mut a.db),
        Command::Logs(a) => layer.db(&mut a.db),
        Command::Status(a) => layer.db(&mut a.db),
        Command::Watch(a) => layer.db(&mut a.db),
        Command::List(a) => layer.db(&mut a.db),
        Command::Retry(a) => layer.db(&mut a.db),
        Command::Cancel(a) => layer.db(&mut a.db),
        Command::Signal(a) => layer.db(&mut a.db),
        Command::Approve(a) | Command::Reject(a) => layer.db(&mut a.db),
        Command::Prune(a) => layer.db(&mut a.db),
        Command::Migrate(a) => layer.db(&mut a.db),
        Command::Audit(a) => {
            layer.db(&mut a.db);
            layer.redispatch(&mut a.redispatch);
        }
        Command::Executor(a) => {
            layer.db(&mut a.db);
            layer.amqp(&mut a.amqp);
            layer.queue_type(&mut a.queue_type);
            layer.log(&mut a.log.log_format);
            layer.ops(&mut a.ops);
            layer.executor(&mut a.tuning);
            layer.limit(&mut a.limits.max_result_bytes);
        }
        Command::Worker(a) => {
            layer.worker(&mut a.worker);
            layer.log(&mut a.log.log_format);
            layer.ops(&mut a.ops);
        }
        Command::Dev(a) => {
            layer.db(&mut a.db);
            layer.worker(&mut a.worker);
            layer.log(&mut a.log.log_format);
            layer.ops(&mut a.ops);
            layer.executor(&mut a.executor);
            layer.set(
                &mut a.server_addr,
                "server_addr",
                layer.settings.server_addr,
            );
        }
        Command::Server(a) => {
            layer.db(&mut a.db);
            layer.log(&mut a.log.log_format);
            layer.set(&mut a.addr, "addr", layer.settings.server_addr);
            layer.set(&mut a.max_body, "max_body", layer.settings.max_body);
            layer.set(
                &mut a.request_timeout,
                "request_timeout",
                layer.settings.request_timeout,
            );
        }
        Command::Token(a) => layer.db(a.db_mut()),
        Command::Workflow(a) => layer.db(a.db_mut()),
        Command::Schedule(a) => layer.db(a.db_mut()),
    }
    Ok(())
}

/// The file's settings, applied to what the command line left unset.
struct Layer<'a> {
    given: &'a ArgMatches,
    settings: Settings,
}

impl Layer<'_> {
    /// Replaces `slot` with the file's value unless a flag or the
    /// environment set the argument `id`.
    fn set<T>(&self, slot: &mut T, id: &str, value: Option<T>) {
        let unset = matches!(
            self.given.value_source(id),
            None | Some(ValueSource::DefaultValue)
        );
        if let (true, Some(value)) = (unset, value) {
            *slot = value;
        }
    }

    fn db(&self, db: &mut DbArgs) {
        let s = &self.settings;
        self.set(&mut db.database_url, "database_url", s.database_url.clone());
        self.set(
            &mut db.database_max_connections,
            "database_max_connections",
            s.database_max_connections,
        );
    }

    fn amqp(&self, amqp: &mut AmqpArgs) {
        self.amqp_to(&mut amqp.amqp_url, &mut amqp.amqp_ca_file);
    }

    fn amqp_to(&self, url: &mut String, ca_file: &mut Option<std::path::PathBuf>) {
        let s = &self.settings;
        self.set(url, "amqp_url", s.amqp_url.clone());
        self.set(ca_file, "amqp_ca_file", s.amqp_ca_file.clone().map(Some));
    }

    fn queue_type(&self, queue_type: &mut weft_bus::QueueType) {
        let from_file = self
            .settings
            .queue_type
            .as_deref()
            .and_then(|t| t.parse().ok());
        self.set(queue_type, "queue_type", from_file);
    }

    fn log(&self, format: &mut LogFormat) {
        let from_file = self.settings.log_format.map(|f| match f {
            FileLogFormat::Text => LogFormat::Text,
            FileLogFormat::Json => LogFormat::Json,
        });
        self.set(format, "log_format", from_file);
    }

    fn ops(&self, ops: &mut OpsArgs) {
        self.set(
            &mut ops.metrics_addr,
            "metrics_addr",
            self.settings.metrics_addr.map(Some),
        );
    }

    fn limit(&self, limit: &mut ResultLimit) {
        let from_file = self
            .settings
            .max_result_bytes
            .and_then(|b| ResultLimit::new(b).ok());
        self.set(limit, "max_result_bytes", from_file);
    }

    fn redispatch(&self, redispatch: &mut RedispatchArgs) {
        self.set(
            &mut redispatch.redispatch_after,
            "redispatch_after",
            self.settings.redispatch_after,
        );
    }

    fn executor(&self, t: &mut ExecutorTuning) {
        let s = &self.settings;
        self.set(
            &mut t.executor_concurrency,
            "executor_concurrency",
            s.executor_concurrency,
        );
        self.set(
            &mut t.executor_prefetch,
            "executor_prefetch",
            s.executor_prefetch,
        );
        self.set(
            &mut t.executor_batches,
            "executor_batches",
            s.executor_batches,
        );
        self.set(
            &mut t.executor_flush_queue,
            "executor_flush_queue",
            s.executor_flush_queue,
        );
        self.set(&mut t.reaper_interval, "reaper_interval", s.reaper_interval);
        self.set(&mut t.heartbeat_grace, "heartbeat_grace", s.heartbeat_grace);
        self.set(&mut t.deadline_grace, "deadline_grace", s.deadline_grace);
        self.redispatch(&mut t.redispatch);
        let retention = s
            .retention
            .as_deref()
            .and_then(|r| crate::commands::prune::positive_duration(r).ok());
        self.set(&mut t.retention, "retention", retention.map(Some));
    }

    fn worker(&self, w: &mut WorkerArgs) {
        let s = &self.settings;
        self.amqp_to(&mut w.amqp_url, &mut w.amqp_ca_file);
        self.queue_type(&mut w.queue_type);
        let queues = s.queue.clone().map(|q| match q {
            OneOrMany::One(name) => vec![name],
            OneOrMany::Many(names) => names,
        });
        self.set(&mut w.queues, "queues", queues);
        self.set(&mut w.concurrency, "concurrency", s.concurrency);
        self.set(
            &mut w.heartbeat_interval,
            "heartbeat_interval",
            s.heartbeat_interval,
        );
        self.set(
            &mut w.start_report_delay,
            "start_report_delay",
            s.start_report_delay,
        );
        self.limit(&mut w.max_result_bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory as _, FromArgMatches as _};

    use super::{KEYS, Settings, layer};
    use crate::cli::{Cli, Command};

    /// Every setting, as the README documents the file.
    const EVERY_SETTING: &str = "\
database_url: postgres://weft:secret@db:5432/weft
database_max_connections: 4
amqp_url: amqp://weft:secret@mq:5672/%2f
queue_type: classic
amqp_ca_file: /etc/weft/ca.pem
log_format: json
metrics_addr: 127.0.0.1:9464
executor_concurrency: 256
executor_prefetch: 128
executor_batches: 3
executor_flush_queue: 32
reaper_interval: 2
heartbeat_grace: 20
deadline_grace: 10
redispatch_after: 120
retention: 30d
queue: [gpu, default]
concurrency: 4
heartbeat_interval: 2.5
start_report_delay: 0
max_result_bytes: 65536
server_addr: 127.0.0.1:8081
max_body: 1048576
request_timeout: 10
";

    #[test]
    fn every_key_is_a_setting_and_every_setting_a_key() {
        let settings = Settings::parse(Path::new("weft.yaml"), EVERY_SETTING).unwrap();
        assert!(!format!("{settings:?}").contains("None"), "{settings:?}");
        assert_eq!(EVERY_SETTING.lines().count(), KEYS.len());
    }

    #[test]
    fn an_unknown_key_is_refused_with_the_closest_one() {
        let err = Settings::parse(Path::new("weft.yaml"), "concurency: 4\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the config file weft.yaml has an unknown setting `concurency` (did you mean `concurrency`?)"
        );
        let err = Settings::parse(Path::new("w.yaml"), "zzz: 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("the settings are: database_url,"), "{err}");
    }

    #[test]
    fn bad_values_name_the_file() {
        let err = Settings::parse(Path::new("w.yaml"), "concurrency: lots\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("w.yaml has a bad value"),
            "{err:#}"
        );
        let err = Settings::parse(Path::new("w.yaml"), "queue_type: stream\n").unwrap_err();
        assert!(
            err.to_string().contains(
                "`queue_type`: unknown queue type `stream`: expected `quorum` or `classic`"
            ),
            "{err}"
        );
        let err = Settings::parse(Path::new("w.yaml"), "retention: 0d\n").unwrap_err();
        assert!(err.to_string().contains("`retention`"), "{err}");
    }

    fn parsed_with_file(args: &[&str], file: &str) -> Command {
        let dir = std::env::temp_dir().join(format!("weft-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.yaml", args.join("_").replace('-', "")));
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["weft"];
        argv.extend_from_slice(args);
        let path = path.display().to_string();
        argv.extend_from_slice(&["--config", &path]);
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let mut cli = Cli::from_arg_matches(&matches).unwrap();
        layer(&mut cli.command, &matches).unwrap();
        cli.command
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let Command::Worker(w) = parsed_with_file(&["worker", "--concurrency", "2"], EVERY_SETTING)
        else {
            unreachable!()
        };
        assert_eq!(w.worker.concurrency, 2, "the flag wins");
        assert_eq!(w.worker.queues, ["gpu", "default"], "the file fills in");
        if std::env::var_os("WEFT_AMQP_URL").is_none() {
            assert_eq!(w.worker.amqp_url, "amqp://weft:secret@mq:5672/%2f");
        }
        assert_eq!(w.worker.max_result_bytes.bytes(), 65_536);
        if std::env::var_os("WEFT_QUEUE_TYPE").is_none() {
            assert_eq!(w.worker.queue_type, weft_bus::QueueType::Classic);
        }
        let Command::Executor(e) = parsed_with_file(&["executor"], EVERY_SETTING) else {
            unreachable!()
        };
        assert_eq!(e.tuning.executor_concurrency, 256);
        if std::env::var_os("WEFT_DATABASE_URL").is_none() {
            assert_eq!(e.db.database_url, "postgres://weft:secret@db:5432/weft");
        }
        assert!(e.tuning.retention.is_some() && e.ops.metrics_addr.is_some());
        let Command::Status(s) =
            parsed_with_file(&["status", "last"], "database_max_connections: 2\n")
        else {
            unreachable!()
        };
        assert_eq!(s.db.database_max_connections, 2);
        let Command::Server(server) = parsed_with_file(&["server"], EVERY_SETTING) else {
            unreachable!()
        };
        if std::env::var_os("WEFT_SERVER_ADDR").is_none() {
            assert_eq!(server.addr.to_string(), "127.0.0.1:8081");
        }
        assert_eq!((server.max_body, server.request_timeout), (1_048_576, 10.0));
        let Command::Dev(dev) =
            parsed_with_file(&["dev", "--server-addr", "127.0.0.1:9"], EVERY_SETTING)
        else {
            unreachable!()
        };
        assert_eq!(dev.server_addr.to_string(), "127.0.0.1:9", "the flag wins");
    }
}
