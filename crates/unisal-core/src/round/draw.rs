//! The initial round of a project without labels: a seeded uniform draw of the initial set as the query
//! batch, with no training and no predictions.

use super::types::NewQuery;
use super::{RoundSpec, RoundStatus, RoundSummary, Snapshot, INITIAL_RANDOM};
use crate::error::Result;
use crate::events::{Progress, ProgressSink};
use crate::pool::{PatchId, Pool};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The stream of the initial draw, apart from every strategy's.
const DRAW_STREAM: u64 = 0x696e_6974;

/// `n` of `ids` (sorted ascending) drawn uniformly without replacement, seeded: each id draws a 64-bit key
/// in id order and the smallest keys win, in key order. Depends only on the ChaCha8 stream and the ids.
pub fn draw_initial(ids: &[PatchId], n: usize, seed: u64) -> Vec<(PatchId, f64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(DRAW_STREAM);
    let mut keyed: Vec<(u64, PatchId)> = ids.iter().map(|&id| (rng.next_u64(), id)).collect();
    keyed.sort_unstable();
    keyed.truncate(n);
    keyed.into_iter().map(|(key, id)| (id, (key >> 11) as f64 / (1u64 << 53) as f64)).collect()
}

/// Record the initial draw as a `done` round with its query batch.
pub(crate) fn initial_random(
    pool: &mut Pool,
    spec: &RoundSpec,
    snap: &Snapshot,
    n: usize,
    progress: &dyn ProgressSink,
) -> Result<RoundSummary> {
    progress.report(&Progress::new("select", 0, Some(1)));
    let mut sorted = snap.unlabeled.clone();
    sorted.sort_unstable();
    let drawn = draw_initial(&sorted, n, spec.seed);
    let queries: Vec<NewQuery> = drawn
        .iter()
        .enumerate()
        .map(|(rank, &(patch_id, key))| NewQuery {
            patch_id,
            rank,
            reason: "initial random set".into(),
            score: Some(key),
        })
        .collect();
    let mut row = snap.row(spec, RoundStatus::Done, INITIAL_RANDOM);
    row.budget = n;
    let note = if drawn.len() < n {
        format!(
            "initial random set of {} (only {} unlabeled patches; no training)",
            drawn.len(),
            sorted.len()
        )
    } else {
        format!("initial random set of {n} (no training)")
    };
    row.note = Some(note.clone());
    row.timings.total_s = snap.clock.elapsed().as_secs_f64();
    row.timings.snapshot_s = row.timings.total_s;
    row.metrics.insert("unlabeled".into(), sorted.len() as f64);
    pool.write_round(&row, &[], &queries, &[])?;
    progress.report(&Progress::new("select", 1, Some(1)));
    Ok(RoundSummary {
        round: snap.round,
        strategy: INITIAL_RANDOM.into(),
        trained: false,
        device: None,
        labeled: 0,
        unlabeled: sorted.len(),
        queries: drawn.iter().map(|&(id, _)| id).collect(),
        topped_up: 0,
        note: Some(note),
        timings: row.timings,
        metrics: row.metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::draw_initial;

    #[test]
    fn draw_is_seeded_distinct_and_sized() {
        let ids: Vec<i64> = (1..=200).collect();
        let a = draw_initial(&ids, 40, 7);
        assert_eq!(a, draw_initial(&ids, 40, 7));
        assert_ne!(a, draw_initial(&ids, 40, 8));
        let mut got: Vec<i64> = a.iter().map(|p| p.0).collect();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 40);
        assert_eq!(draw_initial(&ids[..10], 40, 7).len(), 10);
        // A prefix of a larger draw: asking for fewer keeps the first picks.
        assert_eq!(draw_initial(&ids, 10, 7), a[..10].to_vec());
    }
}
