//! The `patch` URI scheme: `patch://localhost/<key>/thumb/<id>` and `patch://localhost/<key>/full/<id>`
//! (on Windows `http://patch.localhost/...`). It serves only patches of the open pool, by integer id: no
//! file path ever comes from the UI. `<key>` is the image key of the project's opening, so an address of
//! a project opened before never shows (or is cached as) another project's patch. A malformed address is
//! a 400; an unknown id, a stale key or no open project a 404.

use crate::state::AppState;
use tauri::http::{header, Method, Request, Response, StatusCode};
use unisal_core::pool::PatchId;
use unisal_core::{CoreError, Pool};

/// The scheme name, as the UI addresses it.
pub const SCHEME: &str = "patch";

/// Which rendition of a patch is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendition {
    /// The small stored thumbnail.
    Thumb,
    /// The stored full-resolution image.
    Full,
}

/// Parses the path of a request (`/3/thumb/12`) into image key, rendition and id. Only ASCII digits
/// form numbers; no extra segment.
pub fn parse_path(path: &str) -> Option<(u64, Rendition, PatchId)> {
    let rest = path.strip_prefix('/')?;
    let (key, rest) = rest.split_once('/')?;
    let (kind, id) = rest.split_once('/')?;
    let rendition = match kind {
        "thumb" => Rendition::Thumb,
        "full" => Rendition::Full,
        _ => return None,
    };
    Some((number(key)?, rendition, number(id)?))
}

fn number<T: std::str::FromStr>(digits: &str) -> Option<T> {
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Answers one request against the open pool (if any) and its image key.
pub fn serve(pool: Option<(&Pool, u64)>, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    if request.uri().query().is_some() {
        return text(StatusCode::BAD_REQUEST, "no query allowed");
    }
    let Some((key, rendition, id)) = parse_path(request.uri().path()) else {
        return text(StatusCode::BAD_REQUEST, "expected /<key>/thumb/<id> or /<key>/full/<id>");
    };
    let Some((pool, open_key)) = pool else {
        return text(StatusCode::NOT_FOUND, "no project is open");
    };
    if key != open_key {
        return text(StatusCode::NOT_FOUND, "the address belongs to a project that is no longer open");
    }
    let image = match rendition {
        Rendition::Thumb => pool.thumbnail(id),
        Rendition::Full => pool.image(id),
    };
    match image {
        Ok(image) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, image.mime())
            .header(header::CACHE_CONTROL, "no-store")
            .header("X-Content-Type-Options", "nosniff")
            .body(image.data)
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response")),
        Err(CoreError::UnknownPatch(_)) => text(StatusCode::NOT_FOUND, "no such patch"),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Answers a request from the webview with the app's state.
pub fn handle(state: &AppState, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let mut answer = None;
    let outcome = state.with_keyed_pool(|pool, key| {
        answer = Some(serve(Some((pool, key)), request));
        Ok(())
    });
    match (outcome, answer) {
        (Ok(()), Some(response)) => response,
        _ => serve(None, request),
    }
}

fn text(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    let mut response = Response::new(message.as_bytes().to_vec());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
