//! Tests of the pool on real SQLite files in a temporary folder.

use super::*;
use crate::error::CoreError;

fn new_pool() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create(dir.path().join("p.unisal")).unwrap();
    (dir, pool)
}

/// A distinct fake patch (the pool stores bytes; it does not decode them).
fn patch(n: u8, label: Option<ImportLabel>) -> NewPatch {
    NewPatch {
        sha256: format!("{:064x}", n as u64 + 1),
        width: 150,
        height: 150,
        source_path: format!("dir/p{n}.jpg"),
        group: Some(format!("slide{}", n % 2)),
        format: "jpeg".into(),
        source_format: "jpeg".into(),
        note: None,
        image: vec![0xFF, 0xD8, n, 0xFF, 0xD9],
        thumbnail_format: "jpeg".into(),
        thumbnail: vec![n; 10],
        label,
    }
}

#[test]
fn migrations_twice_are_a_noop() {
    let (_d, mut pool) = new_pool();
    assert_eq!(pool.schema_version().unwrap(), schema::current_version());
    let schema_sql = |pool: &Pool| -> Vec<String> {
        let mut stmt =
            pool.conn().prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    let before = schema_sql(&pool);
    assert_eq!(pool.migrate().unwrap(), 0);
    assert_eq!(pool.migrate().unwrap(), 0);
    assert_eq!(schema_sql(&pool), before);
    // Re-running the migrations on a reopened file changes nothing either.
    let path = pool.path().to_path_buf();
    drop(pool);
    let mut pool = Pool::open(&path).unwrap();
    assert_eq!(pool.migrate().unwrap(), 0);
    assert_eq!(schema_sql(&pool), before);
    let tables = before.iter().filter(|s| s.starts_with("CREATE TABLE")).count();
    assert_eq!(tables, 12);
    let mode: String = pool.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = pool.conn().query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
    assert_eq!(fk, 1);
}

#[test]
fn a_version_1_file_upgrades_to_the_current_schema_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.unisal");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "application_id", schema::APPLICATION_ID).unwrap();
        assert_eq!(schema::migrate_to(&mut conn, 1).unwrap(), 1);
        assert_eq!(schema::version(&conn).unwrap(), 1);
        conn.execute_batch(
            "INSERT INTO classes (id, name, color, hotkey, position) VALUES (7, 'tumor', '#ff0000', '1', 1),
                                                                          (9, 'stroma', '#00ff00', '2', 0);
             INSERT INTO patches (id, sha256, width, height, source_path, grp, format, source_format, imported_at)
                 VALUES (1, 'aa', 10, 10, 'a.png', NULL, 'png', 'png', 0);
             INSERT INTO images (patch_id, data) VALUES (1, x'00');
             INSERT INTO thumbnails (patch_id, format, data) VALUES (1, 'png', x'00');
             INSERT INTO labels (patch_id, class_id, source, round, updated_at) VALUES (1, 7, 'human', NULL, 5);
             INSERT INTO rounds (id, status, strategy, started_at) VALUES (1, 'done', 'random', 1);
             INSERT INTO predictions (round_id, patch_id, prob_a, prob_b, pred_a, pred_b, pred, disagreement, confidence)
                 VALUES (1, 1, x'0000803f00000000', x'0000803f00000000', 0, 0, 0, 0.0, 1.0);",
        )
        .unwrap();
        // Version 1 has neither the flags table nor the class order of a round.
        assert!(conn.execute("INSERT INTO flags (patch_id, created_at) VALUES (1, 0)", []).is_err());
    }
    let pool = Pool::open(&path).unwrap();
    assert_eq!(pool.schema_version().unwrap(), 2);
    assert_eq!(pool.label(1).unwrap(), Some(7));
    assert_eq!(pool.round_predictions(1).unwrap().len(), 1);
    // A round without stored class ids maps prediction indexes to the current position order.
    assert_eq!(pool.round_class_ids(1).unwrap(), vec![9, 7]);
    assert!(pool.check_integrity().unwrap().is_empty());
    let indexes: Vec<String> = pool
        .conn()
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'predictions' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(indexes, ["predictions_confidence", "predictions_disagreement", "predictions_pred"]);
}

#[test]
fn open_refuses_foreign_and_newer_files_without_changing_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.unisal");
    std::fs::write(&text, "hello, not a database at all, but long enough to look like one maybe").unwrap();
    let before = std::fs::read(&text).unwrap();
    assert!(matches!(Pool::open(&text), Err(CoreError::NotAProject { .. })));
    assert_eq!(std::fs::read(&text).unwrap(), before);

    let other = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
    let err = Pool::open(&other).unwrap_err();
    assert!(matches!(err, CoreError::NotAProject { .. }), "{err}");
    assert!(err.to_string().contains("other.sqlite"));

    let newer = dir.path().join("newer.unisal");
    drop(Pool::create(&newer).unwrap());
    rusqlite::Connection::open(&newer).unwrap().pragma_update(None, "user_version", 999).unwrap();
    match Pool::open(&newer) {
        Err(CoreError::NewerSchema { found, .. }) => assert_eq!(found, 999),
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert!(matches!(Pool::open(dir.path().join("missing.unisal")), Err(CoreError::NotFound(_))));
    assert!(matches!(Pool::create(&newer), Err(CoreError::AlreadyExists(_))));
}

#[test]
fn classes_crud_and_reorder() {
    let (_d, mut pool) = new_pool();
    let a = pool.add_class("tumor", None, None).unwrap();
    let b = pool.add_class("stroma", Some("#00FF00"), Some("s")).unwrap();
    let c = pool.add_class("  debris ", None, None).unwrap();
    assert_eq!((a.position, b.position, c.position), (0, 1, 2));
    assert_eq!(a.hotkey.as_deref(), Some("1"));
    assert_eq!(b.color, "#00ff00");
    assert_eq!(c.name, "debris");
    assert_eq!(c.hotkey.as_deref(), Some("2"));
    assert!(matches!(pool.add_class("tumor", None, None), Err(CoreError::ClassExists(_))));
    assert!(matches!(pool.add_class("x", None, Some("s")), Err(CoreError::HotkeyTaken { .. })));
    assert!(matches!(pool.add_class("", None, None), Err(CoreError::Invalid { .. })));
    assert!(matches!(pool.set_class_color(a.id, "red"), Err(CoreError::Invalid { .. })));
    assert_eq!(pool.rename_class(a.id, "TUM").unwrap().name, "TUM");
    assert!(matches!(pool.rename_class(a.id, "stroma"), Err(CoreError::ClassExists(_))));
    assert_eq!(pool.set_class_color(a.id, "#123abc").unwrap().color, "#123abc");
    assert_eq!(pool.set_class_hotkey(a.id, Some("t")).unwrap().hotkey.as_deref(), Some("t"));
    assert_eq!(pool.set_class_hotkey(a.id, None).unwrap().hotkey, None);
    let order = pool.move_class(c.id, 0).unwrap();
    let names: Vec<_> = order.iter().map(|c| (c.name.as_str(), c.position)).collect();
    assert_eq!(names, vec![("debris", 0), ("TUM", 1), ("stroma", 2)]);
    let order = pool.move_class(c.id, 99).unwrap();
    assert_eq!(order.last().unwrap().id, c.id);
    assert_eq!(order.iter().map(|c| c.position).collect::<Vec<_>>(), vec![0, 1, 2]);
    let all = pool.ensure_classes(&["stroma".into(), "mucosa".into()]).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].name, "mucosa");
}

#[test]
fn insert_batches_detect_duplicates_and_store_labels() {
    let (_d, mut pool) = new_pool();
    let t = pool.add_class("T", None, None).unwrap().id;
    let out = pool
        .insert_patches(&[
            patch(1, Some(ImportLabel::Real(t))),
            patch(2, Some(ImportLabel::Oracle(t))),
            patch(3, None),
        ])
        .unwrap();
    let ids: Vec<_> = out
        .iter()
        .map(|o| match o {
            InsertOutcome::Inserted(id) => *id,
            InsertOutcome::Duplicate(_) => panic!("unexpected duplicate"),
        })
        .collect();
    let again = pool.insert_patches(&[patch(1, None), patch(4, None), patch(4, None)]).unwrap();
    assert_eq!(again[0], InsertOutcome::Duplicate(ids[0]));
    assert!(matches!(again[1], InsertOutcome::Inserted(_)));
    assert!(matches!(again[2], InsertOutcome::Duplicate(_)));
    assert_eq!(pool.labeled_set().unwrap(), vec![(ids[0], t)]);
    assert_eq!(pool.oracle_labels().unwrap(), vec![(ids[1], t)]);
    assert_eq!(pool.unlabeled_ids().unwrap().len(), 3);
    assert_eq!(pool.known_hashes().unwrap().len(), 4);
    assert_eq!(pool.image_bytes(ids[2]).unwrap(), vec![0xFF, 0xD8, 3, 0xFF, 0xD9]);
    let th = pool.thumbnail(ids[1]).unwrap();
    assert_eq!((th.mime(), th.data), ("image/jpeg", vec![2; 10]));
    assert!(matches!(pool.thumbnail(999), Err(CoreError::UnknownPatch(999))));
    let hist = pool.label_history(ids[0]).unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].source, LabelSource::Imported);

    // A bad patch anywhere in a batch refuses the whole batch.
    let mut bad = patch(9, None);
    bad.sha256 = "xyz".into();
    assert!(pool.insert_patches(&[patch(8, None), bad]).is_err());
    assert_eq!(pool.status().unwrap().patches, 4);
    assert!(pool.check_integrity().unwrap().is_empty());
}

#[test]
fn page_patches_filters_and_status_counts() {
    let (_d, mut pool) = new_pool();
    let a = pool.add_class("A", None, None).unwrap().id;
    let b = pool.add_class("B", None, None).unwrap().id;
    let batch: Vec<_> = (0..10).map(|n| patch(n, (n < 3).then_some(ImportLabel::Real(a)))).collect();
    pool.insert_patches(&batch).unwrap();
    let first = pool.page_patches(0, 4, &PatchFilter::default()).unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(first[0].label, Some(a));
    let rest = pool.page_patches(4, 100, &PatchFilter::default()).unwrap();
    assert_eq!(rest.len(), 6);
    assert!(first.last().unwrap().id < rest[0].id);
    let unl = PatchFilter { label: LabelFilter::Unlabeled, group: None };
    assert_eq!(pool.count_patches(&unl).unwrap(), 7);
    let g = PatchFilter { label: LabelFilter::Class(a), group: Some("slide0".into()) };
    assert_eq!(pool.page_patches(0, 100, &g).unwrap().len(), 2);
    let id = rest[0].id;
    pool.set_label(id, b).unwrap();
    let s = pool.status().unwrap();
    assert_eq!((s.patches, s.labeled, s.unlabeled, s.rounds), (10, 4, 6, 0));
    assert_eq!(
        s.classes.iter().map(|(c, n)| (c.name.as_str(), *n)).collect::<Vec<_>>(),
        vec![("A", 3), ("B", 1)]
    );
}

#[test]
fn set_change_clear_and_undo_are_history_events() {
    let (dir, mut pool) = new_pool();
    let a = pool.add_class("A", None, None).unwrap().id;
    let b = pool.add_class("B", None, None).unwrap().id;
    let id = match pool.insert_patches(&[patch(1, None)]).unwrap()[0] {
        InsertOutcome::Inserted(id) => id,
        InsertOutcome::Duplicate(_) => unreachable!(),
    };
    pool.set_label(id, a).unwrap();
    let ch = pool.set_label(id, b).unwrap();
    assert_eq!((ch.before, ch.after), (Some(a), Some(b)));
    pool.clear_label(id).unwrap();
    assert_eq!(pool.label(id).unwrap(), None);
    assert_eq!(pool.undo_label(id).unwrap().after, Some(b));
    assert_eq!(pool.undo_last().unwrap().after, Some(a));
    assert_eq!(pool.undo_label(id).unwrap().after, None);
    assert!(matches!(pool.undo_label(id), Err(CoreError::NothingToUndo(_))));
    assert!(matches!(pool.set_label(id, 777), Err(CoreError::UnknownClassId(777))));
    assert!(matches!(pool.set_label(555, a), Err(CoreError::UnknownPatch(555))));
    let hist = pool.label_history(id).unwrap();
    assert_eq!(hist.len(), 6);
    assert_eq!(hist.iter().filter(|e| e.undoes.is_some()).count(), 3);
    pool.set_labels_from(&[(id, b)], LabelSource::Oracle, Some(2)).unwrap();
    let current = pool.current_labels().unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!((current[0].class_id, current[0].source, current[0].round), (b, LabelSource::Oracle, Some(2)));
    assert_eq!(current[0].source_path, "dir/p1.jpg");
    // Committed: a second connection sees it at once, and a copy in another folder opens and works.
    let other = Pool::open(pool.path()).unwrap();
    assert_eq!(other.label(id).unwrap(), Some(b));
    drop(other);
    drop(pool);
    let moved = tempfile::tempdir().unwrap();
    let copy = moved.path().join("copy.unisal");
    std::fs::copy(dir.path().join("p.unisal"), &copy).unwrap();
    drop(dir);
    let pool = Pool::open(&copy).unwrap();
    assert_eq!(pool.label(id).unwrap(), Some(b));
    assert_eq!(pool.image_bytes(id).unwrap().len(), 5);
    assert_eq!(pool.label_history(id).unwrap().last().unwrap().source, LabelSource::Oracle);
}
