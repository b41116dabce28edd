//! Tests of the `patch` protocol against a real project built from the bundled demo patches.

use super::*;
use std::path::Path;
use unisal_core::events::{CancelToken, NoProgress};

fn demo_pool(dir: &Path) -> Pool {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let (pool, _) =
        unisal_data::demo::open_or_build_demo(&assets, dir, &NoProgress, &CancelToken::new()).unwrap();
    pool
}

fn get(uri: &str) -> Request<Vec<u8>> {
    Request::builder().method(Method::GET).uri(uri).body(Vec::new()).unwrap()
}

#[test]
fn paths_parse_only_as_rendition_and_digits() {
    assert_eq!(parse_path("/thumb/12"), Some((Rendition::Thumb, 12)));
    assert_eq!(parse_path("/full/0"), Some((Rendition::Full, 0)));
    for bad in [
        "",
        "/",
        "/thumb",
        "/thumb/",
        "/thumb/abc",
        "/thumb/-1",
        "/thumb/+1",
        "/thumb/1/",
        "/thumb/1/x",
        "/thumb/%31",
        "/thumb/1.png",
        "/../etc/passwd",
        "/thumb/../../etc/passwd",
        "/etc/passwd",
        "/THUMB/1",
        "thumb/1",
        "/thumb/99999999999999999999",
        "/thumb/ 1",
    ] {
        assert_eq!(parse_path(bad), None, "{bad:?} must be refused");
    }
}

#[test]
fn serves_pool_patches_by_id_with_their_mime_type() {
    let dir = tempfile::tempdir().unwrap();
    let pool = demo_pool(dir.path());
    let id = pool.patch_ids().unwrap()[0];

    let thumb = serve(Some(&pool), &get(&format!("patch://localhost/thumb/{id}")));
    assert_eq!(thumb.status(), StatusCode::OK);
    let mime = thumb.headers()[header::CONTENT_TYPE].to_str().unwrap().to_string();
    assert_eq!(mime, pool.thumbnail(id).unwrap().mime());
    assert_eq!(thumb.body(), &pool.thumbnail(id).unwrap().data);
    let magic_ok = match mime.as_str() {
        "image/jpeg" => thumb.body().starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/png" => thumb.body().starts_with(b"\x89PNG"),
        other => panic!("unexpected thumbnail type {other}"),
    };
    assert!(magic_ok, "thumbnail bytes match their type");

    // The Windows form of the address reaches the same patch.
    let full = serve(Some(&pool), &get(&format!("http://patch.localhost/full/{id}")));
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(full.body(), &pool.image(id).unwrap().data);
    assert_ne!(full.body(), thumb.body());
}

#[test]
fn refuses_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let pool = demo_pool(dir.path());
    let status = |uri: &str| serve(Some(&pool), &get(uri)).status();
    assert_eq!(status("patch://localhost/thumb/999999"), StatusCode::NOT_FOUND);
    assert_eq!(status("patch://localhost/thumb/abc"), StatusCode::BAD_REQUEST);
    assert_eq!(status("patch://localhost/thumb/1?x=1"), StatusCode::BAD_REQUEST);
    assert_eq!(status("patch://localhost/file/etc/passwd"), StatusCode::BAD_REQUEST);
    assert_eq!(status("patch://localhost/thumb/..%2F..%2Fetc%2Fpasswd"), StatusCode::BAD_REQUEST);
    assert_eq!(
        status(&format!("patch://localhost/{}", dir.path().join("demo.unisal").display())),
        StatusCode::BAD_REQUEST
    );
    let post =
        Request::builder().method(Method::POST).uri("patch://localhost/thumb/1").body(Vec::new()).unwrap();
    assert_eq!(serve(Some(&pool), &post).status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(serve(None, &get("patch://localhost/thumb/1")).status(), StatusCode::NOT_FOUND);
    let bad = serve(Some(&pool), &get("patch://localhost/thumb/abc"));
    assert_eq!(bad.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
}

#[test]
fn handle_uses_the_open_project() {
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::default();
    assert_eq!(handle(&state, &get("patch://localhost/thumb/1")).status(), StatusCode::NOT_FOUND);
    let pool = demo_pool(dir.path());
    let id = pool.patch_ids().unwrap()[0];
    state.set_project(pool);
    assert_eq!(handle(&state, &get(&format!("patch://localhost/thumb/{id}"))).status(), StatusCode::OK);
}
