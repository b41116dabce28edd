//! Tests of the `patch` protocol against a real project built from the bundled demo patches.

use super::*;
use std::path::Path;
use unisal_core::events::{CancelToken, NoProgress};

const KEY: u64 = 7;

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
fn paths_parse_only_as_key_rendition_and_digits() {
    assert_eq!(parse_path("/3/thumb/12"), Some((3, Rendition::Thumb, 12)));
    assert_eq!(parse_path("/1/full/0"), Some((1, Rendition::Full, 0)));
    for bad in [
        "",
        "/",
        "/thumb/1",
        "/1/thumb",
        "/1/thumb/",
        "/1/thumb/abc",
        "/1/thumb/-1",
        "/1/thumb/+1",
        "/1/thumb/1/",
        "/1/thumb/1/x",
        "/1/thumb/%31",
        "/1/thumb/1.png",
        "/x/thumb/1",
        "/-1/thumb/1",
        "/../etc/passwd",
        "/1/thumb/../../etc/passwd",
        "/etc/passwd",
        "/1/THUMB/1",
        "1/thumb/1",
        "/1/thumb/99999999999999999999",
        "/1/thumb/ 1",
    ] {
        assert_eq!(parse_path(bad), None, "{bad:?} must be refused");
    }
}

#[test]
fn serves_pool_patches_by_id_with_their_mime_type() {
    let dir = tempfile::tempdir().unwrap();
    let pool = demo_pool(dir.path());
    let id = pool.patch_ids().unwrap()[0];

    let thumb = serve(Some((&pool, KEY)), &get(&format!("patch://localhost/{KEY}/thumb/{id}")));
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
    let full = serve(Some((&pool, KEY)), &get(&format!("http://patch.localhost/{KEY}/full/{id}")));
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(full.body(), &pool.image(id).unwrap().data);
    assert_ne!(full.body(), thumb.body());
}

#[test]
fn refuses_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let pool = demo_pool(dir.path());
    let id = pool.patch_ids().unwrap()[0];
    let status = |uri: &str| serve(Some((&pool, KEY)), &get(uri)).status();
    assert_eq!(status("patch://localhost/7/thumb/999999"), StatusCode::NOT_FOUND);
    assert_eq!(status(&format!("patch://localhost/6/thumb/{id}")), StatusCode::NOT_FOUND, "stale key");
    assert_eq!(status(&format!("patch://localhost/thumb/{id}")), StatusCode::BAD_REQUEST);
    assert_eq!(status("patch://localhost/7/thumb/abc"), StatusCode::BAD_REQUEST);
    assert_eq!(status(&format!("patch://localhost/7/thumb/{id}?x=1")), StatusCode::BAD_REQUEST);
    assert_eq!(status("patch://localhost/7/file/etc/passwd"), StatusCode::BAD_REQUEST);
    assert_eq!(status("patch://localhost/7/thumb/..%2F..%2Fetc%2Fpasswd"), StatusCode::BAD_REQUEST);
    let project_file = dir.path().join("demo.unisal");
    assert_eq!(status(&format!("patch://localhost{}", project_file.display())), StatusCode::BAD_REQUEST);
    let post =
        Request::builder().method(Method::POST).uri("patch://localhost/7/thumb/1").body(Vec::new()).unwrap();
    assert_eq!(serve(Some((&pool, KEY)), &post).status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(serve(None, &get("patch://localhost/7/thumb/1")).status(), StatusCode::NOT_FOUND);
    let bad = serve(Some((&pool, KEY)), &get("patch://localhost/7/thumb/abc"));
    assert_eq!(bad.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
}

#[test]
fn handle_serves_only_the_current_opening() {
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::default();
    assert_eq!(handle(&state, &get("patch://localhost/1/thumb/1")).status(), StatusCode::NOT_FOUND);
    let pool = demo_pool(dir.path());
    let id = pool.patch_ids().unwrap()[0];
    let path = pool.path().to_path_buf();
    let first = state.set_project(pool);
    let uri = format!("patch://localhost/{first}/thumb/{id}");
    assert_eq!(handle(&state, &get(&uri)).status(), StatusCode::OK);
    let second = state.set_project(Pool::open(&path).unwrap());
    assert_eq!(handle(&state, &get(&uri)).status(), StatusCode::NOT_FOUND);
    let uri = format!("patch://localhost/{second}/thumb/{id}");
    assert_eq!(handle(&state, &get(&uri)).status(), StatusCode::OK);
}
