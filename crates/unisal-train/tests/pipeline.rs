//! The data pipeline on real patches: samplers, determinism across worker counts, the bounded cache, the
//! evaluation view, and clear errors for bad images.

mod trainer_support;

use std::collections::HashSet;
use trainer_support::{load_per_class, shared_dir, MemImages};
use unisal_train::pipeline::{
    eval_batch, prefetch_ordered, train_batch, ImageCache, LabeledSampler, TrainBatch, UnlabeledSampler,
};
use unisal_train::TrainError;

#[test]
fn labeled_sampler_permutes_each_epoch_and_drops_the_last_group() {
    let s = LabeledSampler { n: 10, batch: 4, seed: 7 };
    assert_eq!(s.iterations_per_epoch(), 2);
    for epoch in 0..3u64 {
        let mut seen: Vec<usize> = (0..2).flat_map(|k| s.batch(2 * epoch + k)).collect();
        assert_eq!(seen.len(), 8);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 8, "no repeats within an epoch");
    }
    assert_ne!(s.batch(0), s.batch(2), "a fresh permutation each epoch");
    assert_eq!(s.batch(5), s.batch(5));
}

#[test]
fn fewer_labels_than_a_batch_repeat_permutations() {
    let s = LabeledSampler { n: 3, batch: 8, seed: 1 };
    let b = s.batch(0);
    assert_eq!(b.len(), 8);
    for i in 0..3 {
        let count = b.iter().filter(|&&x| x == i).count();
        assert!((2..=3).contains(&count), "label {i} appears {count} times");
    }
}

#[test]
fn unlabeled_sampler_covers_each_pass_once() {
    let s = UnlabeledSampler { n: 10, batch: 4, seed: 3 };
    let stream: Vec<usize> = (0..5).flat_map(|it| s.batch(it)).collect(); // 20 = two passes
    for pass in stream.chunks(10) {
        let set: HashSet<usize> = pass.iter().copied().collect();
        assert_eq!(set.len(), 10);
    }
    assert_ne!(&stream[..10], &stream[10..], "reshuffled each pass");
    assert!(UnlabeledSampler { n: 0, batch: 4, seed: 0 }.batch(3).is_empty());
}

fn kather() -> Option<(MemImages, Vec<i64>)> {
    let dir = shared_dir("kather2016/originals-150px", "pipeline test")?;
    let mut images = MemImages::default();
    let samples = load_per_class(&dir, 2, 0, 1, 100, &mut images);
    Some((images, samples.iter().map(|s| s.id).collect()))
}

#[test]
fn batches_are_identical_whatever_the_worker_count() {
    let Some((images, ids)) = kather() else { return };
    let labeled: Vec<(i64, u32)> = ids[..4].iter().map(|&id| (id, (id % 3) as u32)).collect();
    let unlabeled = &ids[4..10];
    let run = |workers: usize| -> Vec<TrainBatch> {
        let cache = ImageCache::new(40, 1 << 30);
        let mut out = Vec::new();
        prefetch_ordered(
            5,
            workers,
            2,
            |it| train_batch(&cache, &images, &labeled, unlabeled, 32, 11, it),
            |_, b| {
                out.push(b);
                Ok(())
            },
        )
        .unwrap();
        out
    };
    let one = run(1);
    assert_eq!(one, run(3));
    assert_eq!(one.len(), 5);
    let b = &one[0];
    assert_eq!((b.len, b.labels.len(), b.view_a.len()), (10, 4, 10 * 3 * 32 * 32));
    assert_ne!(b.view_a, b.view_b, "two independent views");
    assert_ne!(one[0].view_a, one[1].view_a, "fresh draws each iteration");
    // normalised values: roughly centred, finite
    let mean = b.view_a.iter().map(|&v| v as f64).sum::<f64>() / b.view_a.len() as f64;
    assert!(b.view_a.iter().all(|v| v.is_finite()) && mean.abs() < 2.0, "mean {mean}");
}

#[test]
fn cache_respects_its_budget_and_eval_view_is_uncropped() {
    let Some((images, ids)) = kather() else { return };
    let one_image = 64 * 64 * 3;
    let cache = ImageCache::new(64, 2 * one_image);
    let batch = eval_batch(&cache, &images, &ids[..5]).unwrap();
    assert_eq!(batch.side, 64);
    assert_eq!(batch.data.len(), 5 * 3 * 64 * 64);
    assert_eq!(cache.bytes(), 2 * one_image, "only two images fit the budget");
    let again = eval_batch(&cache, &images, &ids[..5]).unwrap();
    assert_eq!(batch, again, "cached and re-decoded images give the same view");
}

#[test]
fn bad_images_name_the_patch() {
    let mut images = MemImages::default();
    images.0.insert(5, b"GIF89a garbage".to_vec());
    let cache = ImageCache::new(32, 1 << 20);
    let e = eval_batch(&cache, &images, &[5]).unwrap_err();
    assert!(matches!(e, TrainError::Image { patch_id: 5, .. }), "{e}");
    let e = eval_batch(&cache, &images, &[6]).unwrap_err().to_string();
    assert!(e.contains("patch 6") && e.contains("no patch with id 6"), "{e}");
}

#[test]
fn prefetch_stops_at_the_first_error_in_order() {
    let mut seen = Vec::new();
    let r = prefetch_ordered(
        20,
        3,
        2,
        |j| if j == 7 { Err(TrainError::InvalidInput(format!("job {j}"))) } else { Ok(j) },
        |j, v| {
            assert_eq!(j, v);
            seen.push(v);
            Ok(())
        },
    );
    assert!(r.unwrap_err().to_string().contains("job 7"));
    assert_eq!(seen, (0..7).collect::<Vec<_>>());
    let r = prefetch_ordered(10, 2, 1, Ok, |j, _| if j == 3 { Err(TrainError::Cancelled) } else { Ok(()) });
    assert!(matches!(r, Err(TrainError::Cancelled)));
}
