//! The data pipeline: a bounded cache of decoded, resized images; the labeled and unlabeled samplers of
//! UNISAL.md section 1.2; and an ordered prefetcher that prepares batches on worker threads a few batches
//! ahead of the device.
//!
//! Determinism: the samplers are pure functions of (seed, iteration) and every sample's augmentation comes from
//! its own RNG derived from (seed, iteration, slot, view), so the batches are identical whatever the number of
//! workers or their timing.
//!
//! Labeled sampler: a fresh permutation each epoch, cut in groups of `batch` (the incomplete last group is
//! dropped). With fewer labels than `batch`, an "epoch" is one iteration whose batch is the start of fresh
//! permutations laid end to end (every label appears floor(batch/N) or floor(batch/N)+1 times).
//! Unlabeled sampler: an endless sequence of passes, each a fresh permutation; batches may straddle two passes.

use crate::augment::{self, decode_rgb, resize_shorter, sample_rng};
use crate::error::{Result, TrainError};
use image::RgbImage;
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use unisal_core::learner::ImageSource;

/// Default memory budget of the decoded-image cache (bytes of RGB8 pixels).
pub const DEFAULT_CACHE_BYTES: usize = 2 << 30;

const STREAM_LABELED: u64 = 1;
const STREAM_UNLABELED: u64 = 2;

/// Decoded images, resized so that their shorter side is `side`, kept until the byte budget is reached; after
/// that, images not yet cached are decoded on every use (memory stays bounded; results are the same).
#[derive(Debug)]
pub struct ImageCache {
    side: u32,
    budget: usize,
    used: AtomicUsize,
    map: Mutex<HashMap<i64, Arc<RgbImage>>>,
}

impl ImageCache {
    /// An empty cache for images resized to shorter side `side`, holding at most `budget` bytes.
    pub fn new(side: u32, budget: usize) -> Self {
        Self { side, budget, used: AtomicUsize::new(0), map: Mutex::new(HashMap::new()) }
    }

    /// The shorter side of the cached images.
    pub fn side(&self) -> u32 {
        self.side
    }

    /// Bytes of pixels held now.
    pub fn bytes(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The resized image of `patch_id`, from the cache or decoded from `source`.
    pub fn get(&self, patch_id: i64, source: &dyn ImageSource) -> Result<Arc<RgbImage>> {
        if let Some(img) = self.map.lock().map_err(|_| poisoned())?.get(&patch_id) {
            return Ok(Arc::clone(img));
        }
        let bytes = source
            .image_bytes(patch_id)
            .map_err(|e| TrainError::Image { patch_id, reason: format!("cannot read image: {e}") })?;
        let img = Arc::new(resize_shorter(decode_rgb(&bytes, patch_id)?, self.side));
        let size = img.as_raw().len();
        if self.used.load(Ordering::Relaxed) + size <= self.budget {
            let mut map = self.map.lock().map_err(|_| poisoned())?;
            if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(patch_id) {
                self.used.fetch_add(size, Ordering::Relaxed);
                slot.insert(Arc::clone(&img));
            }
        }
        Ok(img)
    }
}

fn poisoned() -> TrainError {
    TrainError::InvalidInput("the image cache lock was poisoned by a panicking worker".into())
}

fn permutation(n: usize, seed: u64, stream: u64, a: u64, b: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    p.shuffle(&mut sample_rng(seed, stream, a, b));
    p
}

/// Indices into the labeled set for each iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabeledSampler {
    pub n: usize,
    pub batch: usize,
    pub seed: u64,
}

impl LabeledSampler {
    /// Iterations of one epoch: max(1, floor(n / batch)).
    pub fn iterations_per_epoch(&self) -> u64 {
        ((self.n / self.batch.max(1)) as u64).max(1)
    }

    /// The labeled indices of iteration `it`.
    pub fn batch(&self, it: u64) -> Vec<usize> {
        if self.n == 0 || self.batch == 0 {
            return Vec::new();
        }
        let per_epoch = self.iterations_per_epoch();
        let (epoch, pos) = (it / per_epoch, (it % per_epoch) as usize);
        if self.n >= self.batch {
            let perm = permutation(self.n, self.seed, STREAM_LABELED, epoch, 0);
            return perm[pos * self.batch..(pos + 1) * self.batch].to_vec();
        }
        let mut out = Vec::with_capacity(self.batch);
        let mut repeat = 0;
        while out.len() < self.batch {
            out.extend(permutation(self.n, self.seed, STREAM_LABELED, epoch, repeat));
            repeat += 1;
        }
        out.truncate(self.batch);
        out
    }
}

/// Indices into the unlabeled set for each iteration (endless passes, reshuffled each pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnlabeledSampler {
    pub n: usize,
    pub batch: usize,
    pub seed: u64,
}

impl UnlabeledSampler {
    /// The unlabeled indices of iteration `it` (empty when there are no unlabeled images).
    pub fn batch(&self, it: u64) -> Vec<usize> {
        if self.n == 0 {
            return Vec::new();
        }
        let mut memo: Option<(u64, Vec<usize>)> = None;
        (0..self.batch as u64)
            .map(|k| {
                let idx = it * self.batch as u64 + k;
                let pass = idx / self.n as u64;
                if memo.as_ref().is_none_or(|(p, _)| *p != pass) {
                    memo = Some((pass, permutation(self.n, self.seed, STREAM_UNLABELED, pass, 0)));
                }
                memo.as_ref().map(|(_, perm)| perm[(idx % self.n as u64) as usize]).unwrap_or(0)
            })
            .collect()
    }
}

/// One prepared training batch: labeled images first, then unlabeled; two independent views of each.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainBatch {
    /// Images in the batch.
    pub len: usize,
    /// Labels of the first `labels.len()` images.
    pub labels: Vec<u32>,
    /// View 1 (network A), CHW normalised, `len * 3 * crop * crop` floats.
    pub view_a: Vec<f32>,
    /// View 2 (network B).
    pub view_b: Vec<f32>,
}

/// Builds the training batch of one iteration from the patches' ids and labels.
pub fn train_batch(
    cache: &ImageCache,
    source: &dyn ImageSource,
    labeled: &[(i64, u32)],
    unlabeled: &[i64],
    crop: u32,
    seed: u64,
    it: u64,
) -> Result<TrainBatch> {
    let len = labeled.len() + unlabeled.len();
    let per = 3 * (crop as usize).pow(2);
    let mut view_a = vec![0.0f32; len * per];
    let mut view_b = vec![0.0f32; len * per];
    let ids = labeled.iter().map(|&(id, _)| id).chain(unlabeled.iter().copied());
    for (slot, id) in ids.enumerate() {
        let img = cache.get(id, source)?;
        let (w, h) = img.dimensions();
        for (view, out) in [(0u64, &mut view_a), (1u64, &mut view_b)] {
            let mut rng = sample_rng(seed, it, slot as u64, view);
            let aug = augment::Augmentation::draw(&mut rng, w, h, crop);
            augment::write_train_view(&img, &aug, crop, &mut out[slot * per..(slot + 1) * per])
                .map_err(|e| TrainError::Image { patch_id: id, reason: e.to_string() })?;
        }
    }
    Ok(TrainBatch { len, labels: labeled.iter().map(|&(_, y)| y).collect(), view_a, view_b })
}

/// One prepared evaluation batch (evaluation view, no augmentation).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalBatch {
    pub ids: Vec<i64>,
    /// Side of the square views.
    pub side: u32,
    /// CHW normalised, `ids.len() * 3 * side * side` floats.
    pub data: Vec<f32>,
}

/// Builds an evaluation batch; every image must give the same view size (an error names the odd patch).
pub fn eval_batch(cache: &ImageCache, source: &dyn ImageSource, ids: &[i64]) -> Result<EvalBatch> {
    let mut side = None;
    let mut data = Vec::new();
    for &id in ids {
        let img = cache.get(id, source)?;
        let s = augment::eval_side(img.width(), img.height());
        let expected = *side.get_or_insert(s);
        if s != expected {
            return Err(TrainError::Image {
                patch_id: id,
                reason: format!("evaluation view is {s} px but the batch's is {expected} px"),
            });
        }
        let start = data.len();
        data.resize(start + 3 * (s as usize).pow(2), 0.0);
        augment::write_eval_view(&img, &mut data[start..])?;
    }
    Ok(EvalBatch { ids: ids.to_vec(), side: side.unwrap_or(cache.side()), data })
}

/// Runs `produce(j)` for j in 0..jobs on `workers` threads, at most `depth` results ahead per worker, and hands
/// the results to `consume` in order on the calling thread. Job j runs on worker j % workers. Stops at the first
/// error of either side (remaining work is abandoned) and returns it.
pub fn prefetch_ordered<T, P, C>(
    jobs: u64,
    workers: usize,
    depth: usize,
    produce: P,
    mut consume: C,
) -> Result<()>
where
    T: Send,
    P: Fn(u64) -> Result<T> + Sync,
    C: FnMut(u64, T) -> Result<()>,
{
    let workers = workers.max(1);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel::<Result<T>>(depth.max(1));
            receivers.push(rx);
            let (produce, stop) = (&produce, &stop);
            scope.spawn(move || {
                let mut j = w as u64;
                while j < jobs && !stop.load(Ordering::Relaxed) {
                    let r = produce(j);
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                    j += workers as u64;
                }
            });
        }
        let mut outcome = Ok(());
        for j in 0..jobs {
            let item = receivers[(j % workers as u64) as usize]
                .recv()
                .map_err(|_| TrainError::InvalidInput("a data worker stopped unexpectedly".into()))
                .and_then(|r| r);
            if let Err(e) = item.and_then(|t| consume(j, t)) {
                outcome = Err(e);
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        drop(receivers);
        outcome
    })
}

/// The number of worker threads for `requested` (0 = available cores).
pub fn worker_count(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    }
}
