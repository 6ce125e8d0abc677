//! `weft token create|list|revoke`: the bearer tokens of `weft server`.
//! An operator's command: it works on the database directly (there is no
//! token yet to ask the server with), through [`weft_store::tokens`]. Only
//! a token's digest is stored; its secret is printed once, at creation.

use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use uuid::Uuid;
use weft_common::auth::{Role, generate_token};
use weft_store::tokens::{self, TokenInfo};

use crate::config::{ConfigArgs, DbArgs};

/// Arguments of `weft token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    pub(crate) action: TokenCommand,
}

/// What `weft token` does.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print it (once: only its digest is stored).
    Create(CreateArgs),
    /// List tokens (never their secrets).
    List(ListArgs),
    /// Revoke a token: the server refuses it from now on.
    Revoke(RevokeArgs),
}

impl TokenArgs {
    /// The `--config` flag of the subcommand.
    pub(crate) fn config(&self) -> &ConfigArgs {
        match &self.action {
            TokenCommand::Create(a) => &a.config,
            TokenCommand::List(a) => &a.config,
            TokenCommand::Revoke(a) => &a.config,
        }
    }

    /// The database flags of the subcommand.
    pub(crate) fn db_mut(&mut self) -> &mut DbArgs {
        match &mut self.action {
            TokenCommand::Create(a) => &mut a.db,
            TokenCommand::List(a) => &mut a.db,
            TokenCommand::Revoke(a) => &mut a.db,
        }
    }
}

/// Arguments of `weft token create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// What the token may do: viewer reads; operator also submits, cancels
    /// and retries; admin also manages tokens.
    #[arg(long, value_parser = parse_role)]
    pub(crate) role: Role,
    /// Who or what holds it (shown by `weft token list` and in the
    /// server's logs); default `<role>-<time>`.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// When it stops working: a duration from now (`30d`, `12h`) or an
    /// RFC 3339 time (`2027-01-01T00:00:00Z`). Default: never.
    #[arg(long, value_name = "WHEN", value_parser = parse_expiry)]
    pub(crate) expires: Option<DateTime<Utc>>,
    /// Print JSON (the secret included, once).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Arguments of `weft token list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Arguments of `weft token revoke`.
#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The token's id (from `weft token list`).
    pub(crate) id: Uuid,
    #[command(flatten)]
    pub(crate) db: DbArgs,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
        .map_err(|e: weft_common::auth::UnknownRole| e.to_string())
}

/// `30d` (from now) or an RFC 3339 time, in the future.
fn parse_expiry(text: &str) -> Result<DateTime<Utc>, String> {
    expiry_at(text, Utc::now())
}

fn expiry_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let at = if let Ok(at) = DateTime::parse_from_rfc3339(text.trim()) {
        at.with_timezone(&Utc)
    } else {
        let duration = weft_common::parse_duration(text)
            .map_err(|e| format!("{e}; or give an RFC 3339 time such as 2027-01-01T00:00:00Z"))?;
        let duration = chrono::Duration::from_std(duration)
            .map_err(|_| format!("`{text}` is too long a time"))?;
        now.checked_add_signed(duration)
            .ok_or_else(|| format!("`{text}` is too long a time"))?
    };
    if at <= now {
        return Err(format!(
            "`{text}` is not in the future: a token must expire after it is created"
        ));
    }
    Ok(at)
}

/// Runs `weft token …`.
pub(crate) async fn run(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        TokenCommand::Create(a) => create(a).await,
        TokenCommand::List(a) => list(a).await,
        TokenCommand::Revoke(a) => revoke(a).await,
    }
}

async fn create(args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", args.role, Utc::now().format("%Y%m%d-%H%M%S")));
    if name.trim().is_empty() {
        anyhow::bail!("--name must not be empty");
    }
    let pool = args.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let secret = generate_token();
    let info = tokens::create(&mut conn, &secret, &name, args.role, args.expires).await?;
    if args.json {
        let mut out = serde_json::to_value(&info)?;
        if let Some(map) = out.as_object_mut() {
            map.insert("token".to_owned(), json!(secret));
        }
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{secret}")?;
    eprintln!(
        "token {} ({}, role {}{}) created. It is shown only this once: store it now.\nUse it with:  export WEFT_TOKEN={secret}\n(and WEFT_SERVER_URL=http://HOST:PORT), or send `Authorization: Bearer <token>`.",
        info.id,
        info.name,
        info.role,
        info.expires_at
            .map(|at| format!(", expires {}", at.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let pool = args.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    let rows = tokens::list(&mut conn).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("no tokens (create one with `weft token create --role viewer|operator|admin`)")?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "id",
        "name",
        "role",
        "state",
        "created",
        "expires",
        "last used",
    ]);
    let time = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    for t in &rows {
        table.add_row([
            t.id.to_string(),
            t.name.clone(),
            t.role.to_string(),
            state(t, now).to_owned(),
            time(Some(t.created_at)),
            t.expires_at
                .map_or_else(|| "never".to_owned(), |at| time(Some(at))),
            time(t.last_used_at),
        ]);
    }
    outln!("{table}")?;
    Ok(ExitCode::SUCCESS)
}

/// `active`, `revoked` or `expired`.
fn state(t: &TokenInfo, now: DateTime<Utc>) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    }
}

async fn revoke(args: &RevokeArgs) -> anyhow::Result<ExitCode> {
    let pool = args.db.connect().await?;
    let mut conn = pool.acquire().await.context("connecting")?;
    match tokens::revoke(&mut conn, args.id).await? {
        Some(t) => {
            let at = t
                .revoked_at
                .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            outln!("token {} ({}, {}) revoked at {at}", t.id, t.name, t.role)?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "error: no token with id {} (`weft token list` shows them)",
                args.id
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_a_duration_from_now_or_a_time_in_the_future() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            expiry_at("30d", now).unwrap(),
            now + chrono::Duration::days(30)
        );
        assert_eq!(
            expiry_at("2027-01-01T00:00:00Z", now).unwrap().to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        let past = expiry_at("2025-01-01T00:00:00Z", now).unwrap_err();
        assert!(past.contains("not in the future"), "{past}");
        let bad = expiry_at("soon", now).unwrap_err();
        assert!(bad.contains("RFC 3339"), "{bad}");
    }
}
