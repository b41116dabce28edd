//! Query strategies (DUS + CS and the baselines): pure functions of predictions, embeddings and a seed.
//!
//! A [`SelectionInput`] holds, for every unlabeled patch, both networks' class probabilities and the
//! averaged 128-d projection; it is validated once and stored sorted by patch id, so that every strategy
//! is invariant to the order in which the caller listed the patches. [`PatchScores`] (JSD disagreement,
//! ensemble confidence, entropy, margin, agreement) are computed for every patch and can be stored per
//! round for the UI.
//!
//! Every [`QueryStrategy`] returns exactly `min(budget, n)` distinct patch ids in rank order, each with a
//! [`Reason`] and a finite score, and is deterministic per seed (ChaCha8). Strategies:
//!
//! | name | what it does |
//! | --- | --- |
//! | `unisal` | DUS (argmax A != argmax B) then CS (k-means, nearest member of each cluster); top-up by JSD |
//! | `random` | a seeded uniform random subset |
//! | `entropy` | highest entropy of the ensemble probabilities |
//! | `least-confidence` | lowest ensemble confidence (max probability) |
//! | `margin` | smallest gap between the ensemble's two most probable classes |
//! | `coreset` | k-center greedy on the embeddings, the labeled set as initial centers |
//! | `badge` | k-means++ seeding on gradient embeddings `(p - onehot(argmax p)) ⊗ e` |

mod badge;
mod coreset;
mod distance;
mod elkan;
mod hamerly;
mod input;
pub mod kmeans;
mod random;
mod rng;
mod scores;
mod seeding;
mod uncertainty;
mod unisal;

pub use badge::Badge;
pub use coreset::CoreSet;
pub use input::{SelectionInput, SelectionInputParts};
pub use kmeans::{kmeans, KMeansAlgorithm, KMeansConfig, KMeansResult};
pub use random::Random;
pub use scores::{jensen_shannon, PatchScores};
pub use uncertainty::{Entropy, LeastConfidence, Margin};
pub use unisal::UniSal;

use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The names [`strategy_by_name`] accepts, in the order the UI and the CLI list them.
pub const STRATEGY_NAMES: [&str; 7] =
    ["unisal", "random", "entropy", "least-confidence", "margin", "coreset", "badge"];

/// A way to choose the next query batch from the unlabeled pool.
pub trait QueryStrategy: Send + Sync {
    /// The strategy's name, one of [`STRATEGY_NAMES`].
    fn name(&self) -> &str;
    /// Choose `min(budget, input.len())` distinct patches, in rank order (most wanted first).
    /// Same input and seed, same result, whatever the order of the patches in the caller's arrays.
    fn select(&self, input: &SelectionInput, budget: usize, seed: u64) -> Result<Selection>;
}

/// Why a patch was chosen; `Display` gives the short text stored with the query batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// UniSAL: the networks disagree and the patch is the member nearest the centroid of k-means cluster
    /// `cluster` (numbered from 0), which has `size` members.
    DisagreeCluster { cluster: usize, size: usize },
    /// UniSAL: every disagreeing patch is taken because there are no more than the budget.
    DisagreeAll,
    /// UniSAL: fewer disagreeing patches than the budget; this agreeing patch has one of the highest JSDs.
    TopUpJsd,
    /// A seeded uniform random draw.
    Random,
    /// Ranked by an uncertainty score of the ensemble (`metric` is "entropy", "least confidence" or "margin").
    Uncertainty { metric: String },
    /// Core-Set: the patch farthest from every center chosen so far (and from the labeled set).
    FarthestPoint,
    /// Core-Set without labeled embeddings: the seeded random first center.
    RandomStart,
    /// BADGE: the first center, the largest gradient embedding.
    LargestGradient,
    /// BADGE: drawn with probability proportional to the squared distance to the chosen centers.
    GradientSeeding,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::DisagreeCluster { cluster, size } => {
                write!(f, "disagree+cluster {cluster} ({size} member{})", if *size == 1 { "" } else { "s" })
            }
            Reason::DisagreeAll => f.write_str("disagree: all candidates taken"),
            Reason::TopUpJsd => f.write_str("top-up: highest JSD"),
            Reason::Random => f.write_str("random"),
            Reason::Uncertainty { metric } => write!(f, "highest uncertainty ({metric})"),
            Reason::FarthestPoint => f.write_str("k-center: farthest from chosen centers"),
            Reason::RandomStart => f.write_str("k-center: random start"),
            Reason::LargestGradient => f.write_str("badge: largest gradient embedding"),
            Reason::GradientSeeding => f.write_str("badge: k-means++ draw on gradient embeddings"),
        }
    }
}

/// One chosen patch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectedItem {
    /// The patch id.
    pub patch_id: i64,
    /// Its rank in the batch, from 0.
    pub rank: usize,
    /// Why it was chosen.
    pub reason: Reason,
    /// The value the strategy ranked or drew by (finite; its meaning is documented per strategy).
    pub score: f64,
}

/// The query batch a strategy chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The strategy's name.
    pub strategy: String,
    /// The chosen patches, most wanted first.
    pub items: Vec<SelectedItem>,
    /// Disagreeing patches available (UniSAL's DUS candidates); `None` for strategies without that notion.
    pub candidates: Option<usize>,
    /// How many items are top-ups (UniSAL with fewer candidates than the budget); 0 otherwise.
    pub topped_up: usize,
}

impl Selection {
    /// The chosen patch ids in rank order.
    pub fn ids(&self) -> Vec<i64> {
        self.items.iter().map(|item| item.patch_id).collect()
    }

    /// Whether top-up items were needed.
    pub fn was_topped_up(&self) -> bool {
        self.topped_up > 0
    }

    /// Build from `(sorted index, reason, score)` picks; ranks follow the order of `picks`.
    pub(crate) fn from_picks(
        strategy: &str,
        input: &SelectionInput,
        picks: Vec<(usize, Reason, f64)>,
    ) -> Selection {
        let items = picks
            .into_iter()
            .enumerate()
            .map(|(rank, (index, reason, score))| SelectedItem {
                patch_id: input.ids()[index],
                rank,
                reason,
                score,
            })
            .collect();
        Selection { strategy: strategy.to_string(), items, candidates: None, topped_up: 0 }
    }
}

/// Every strategy with its default settings, in the order of [`STRATEGY_NAMES`].
pub fn all_strategies() -> Vec<Box<dyn QueryStrategy>> {
    STRATEGY_NAMES.iter().filter_map(|name| strategy_by_name(name).ok()).collect()
}

/// The strategy called `name` (case-insensitive; `_` and `-` are interchangeable, so `least_confidence`,
/// `core-set` and `core_set` work too), with its default settings.
pub fn strategy_by_name(name: &str) -> Result<Box<dyn QueryStrategy>> {
    let normalised = name.trim().to_ascii_lowercase().replace('_', "-");
    let strategy: Box<dyn QueryStrategy> = match normalised.as_str() {
        "unisal" => Box::new(UniSal::default()),
        "random" => Box::new(Random),
        "entropy" => Box::new(Entropy),
        "least-confidence" | "leastconfidence" => Box::new(LeastConfidence),
        "margin" => Box::new(Margin),
        "coreset" | "core-set" => Box::new(CoreSet),
        "badge" => Box::new(Badge),
        _ => {
            return Err(CoreError::Invalid {
                field: "strategy",
                reason: format!("unknown strategy {name:?}; valid names: {}", STRATEGY_NAMES.join(", ")),
            })
        }
    };
    Ok(strategy)
}
