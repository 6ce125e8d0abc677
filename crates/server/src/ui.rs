//! The web UI: a few static files (HTML, CSS, ES modules, no bundler)
//! embedded in the binary and served at `/` and `/assets/{version}/…`.
//!
//! The page is a single HTML document with hash routes (`#/runs/…`); it
//! talks to the API under `/api/v1` with the token the user pastes (or none
//! in `--dev` mode, which the server writes into the page). Asset URLs
//! carry a digest of every embedded file, so browsers may keep them for a
//! year: a new binary with other files has other URLs. The page itself is
//! never cached.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::problem::Problem;

/// One embedded file: its path under `/assets/{version}/` and its bytes.
struct Asset {
    path: &'static str,
    body: &'static [u8],
}

/// Embeds `crates/server/ui/<path>`.
macro_rules! asset {
    ($path:literal) => {
        Asset {
            path: $path,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
        }
    };
}

/// Every file of the UI but the page.
const ASSETS: &[Asset] = &[
    asset!("app.css"),
    asset!("favicon.svg"),
    asset!("js/main.js"),
    asset!("js/api.js"),
    asset!("js/sse.js"),
    asset!("js/dag.js"),
    asset!("js/dom.js"),
    asset!("js/views/login.js"),
    asset!("js/views/runs.js"),
    asset!("js/views/run.js"),
    asset!("js/views/graph.js"),
    asset!("js/views/task.js"),
    asset!("js/views/submit.js"),
];

/// The page, with `{{assets}}` and `{{dev}}` to fill in.
const INDEX: &str = include_str!("../ui/index.html");

/// A digest of every embedded file: the `{version}` of asset URLs.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = DefaultHasher::new();
    for asset in ASSETS {
        asset.path.hash(&mut hasher);
        asset.body.hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
});

/// Where the UI's files are served from, ending in `/`.
fn assets_base() -> String {
    format!("/assets/{}/", *VERSION)
}

/// What the page may load and run: only this server's own files (no
/// inline script or style, no other origin).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// `GET /` and `GET /assets/{version}/{*path}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{version}/{*path}", get(asset))
}

/// The page: the assets' URLs and whether the server runs in `--dev` mode
/// (no token needed) filled in.
async fn index(State(state): State<AppState>) -> Response {
    let page = INDEX
        .replace("{{assets}}", &assets_base())
        .replace("{{dev}}", if state.dev { "true" } else { "false" });
    let mut headers = security_headers();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (headers, page).into_response()
}

/// One embedded file, cached for a year when `version` is the current one
/// (and not cached when a page of an older binary asks for it).
async fn asset(Path((version, path)): Path<(String, String)>) -> Response {
    let Some(found) = ASSETS.iter().find(|a| a.path == path) else {
        return Problem::not_found(format!("the web UI has no file `{path}`")).into_response();
    };
    let Some(content_type) = content_type(found.path) else {
        return Problem::internal(format!("no content type for `{path}`")).into_response();
    };
    let mut headers = security_headers();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if version == *VERSION {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    (StatusCode::OK, headers, found.body).into_response()
}

/// The media type of an embedded file, by its extension.
fn content_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.').map(|(_, ext)| ext)?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        _ => return None,
    })
}

/// Headers every UI response carries.
fn security_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_content_type_and_the_page_links_them_by_version() {
        for asset in ASSETS {
            assert!(
                content_type(asset.path).is_some(),
                "no content type for {}",
                asset.path
            );
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
        }
        assert!(INDEX.contains("{{assets}}js/main.js"));
        assert!(INDEX.contains("{{dev}}"));
        assert_eq!(VERSION.len(), 16);
    }

    #[test]
    fn every_module_the_ui_imports_is_embedded() {
        // A module imported but not listed in ASSETS would be a 404 in the
        // browser: check each `from './x.js'` against the list.
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).expect("UTF-8");
            let dir = asset.path.rsplit_once('/').map_or("", |(d, _)| d);
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['\'', '"']).nth(1) else {
                    continue;
                };
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for segment in spec.split('/') {
                    match segment {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    ASSETS.iter().any(|a| a.path == resolved),
                    "{} imports {spec} ({resolved}), which is not embedded",
                    asset.path
                );
            }
        }
    }
}
