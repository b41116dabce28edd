//! The `patch` URI scheme: `patch://localhost/thumb/<id>` and `patch://localhost/full/<id>` (on Windows
//! `http://patch.localhost/...`). It serves only patches of the open pool, by integer id: no file path
//! ever comes from the UI. Anything else is a 400; an unknown id or no open project a 404.

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

/// Parses the path of a request (`/thumb/12`). Only ASCII digits form an id; no query, no extra segment.
pub fn parse_path(path: &str) -> Option<(Rendition, PatchId)> {
    let rest = path.strip_prefix('/')?;
    let (kind, id) = rest.split_once('/')?;
    let rendition = match kind {
        "thumb" => Rendition::Thumb,
        "full" => Rendition::Full,
        _ => return None,
    };
    if id.is_empty() || id.len() > 18 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((rendition, id.parse().ok()?))
}

/// Answers one request against the open pool (if any).
pub fn serve(pool: Option<&Pool>, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    if request.uri().query().is_some() {
        return text(StatusCode::BAD_REQUEST, "no query allowed");
    }
    let Some((rendition, id)) = parse_path(request.uri().path()) else {
        return text(StatusCode::BAD_REQUEST, "expected /thumb/<id> or /full/<id>");
    };
    let Some(pool) = pool else {
        return text(StatusCode::NOT_FOUND, "no project is open");
    };
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
    let outcome = state.with_pool(|pool| {
        answer = Some(serve(Some(pool), request));
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
