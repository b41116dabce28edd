//! IPC types of training: the form's options and settings, progress and end events, and stored rounds
//! (camelCase on the wire; mirrored in `ui/src/lib/types.ts`).

use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use unisal_core::events::Progress;
use unisal_core::learner::{ModelArch, TrainConfig};
use unisal_core::round::{InitialSet, RoundRecord, RoundSpec, RoundSummary};
use unisal_core::selection::STRATEGY_NAMES;

/// The settings of one round started from the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainSettings {
    pub preset: String,
    pub model: String,
    /// Training crop side in pixels; images are resized to 9/8 of it.
    pub size: u32,
    pub iterations: u64,
    /// Labeled (and unlabeled) images per iteration.
    pub batch: usize,
    pub device: String,
    pub strategy: String,
    pub budget: usize,
    /// Initial random set drawn when nothing is labeled yet (0: refuse to start unlabeled).
    pub initial: usize,
    pub seed: u64,
    pub pretrained: Option<String>,
}

impl TrainSettings {
    /// The defaults the form shows: the CPU preset, or the GPU simulation's when a GPU is usable.
    pub fn defaults(gpu: bool) -> Self {
        let preset = if gpu { "gpu-sim" } else { "cpu-small" };
        let c = TrainConfig::preset(preset).unwrap_or_default();
        TrainSettings {
            preset: preset.into(),
            model: c.arch.name().into(),
            size: c.crop,
            iterations: c.iterations.unwrap_or(300),
            batch: c.batch_labeled,
            device: "auto".into(),
            strategy: "unisal".into(),
            budget: 40,
            initial: 40,
            seed: 0,
            pretrained: None,
        }
    }

    /// The round to run, validated; an error names the field.
    pub fn to_spec(&self) -> AppResult<RoundSpec> {
        let invalid = |field: &'static str, reason: String| AppError::Invalid { field, reason };
        let mut c = TrainConfig::preset(&self.preset)
            .ok_or_else(|| invalid("preset", format!("unknown preset {:?}", self.preset)))?;
        c.arch = ModelArch::parse(&self.model).ok_or_else(|| {
            invalid("model", format!("unknown model {:?}; valid: small, resnet18, resnet50", self.model))
        })?;
        if self.size < 16 || self.size > 1024 {
            return Err(invalid("input size", format!("must be 16..=1024 pixels, got {}", self.size)));
        }
        if self.size != c.crop {
            c.set_input_size(self.size);
        }
        if self.iterations == 0 {
            return Err(invalid("iterations", "must be at least 1".into()));
        }
        c.iterations = Some(self.iterations);
        if self.batch == 0 || self.batch > 1024 {
            return Err(invalid("batch", format!("must be 1..=1024, got {}", self.batch)));
        }
        c.batch_labeled = self.batch;
        c.batch_unlabeled = self.batch;
        c.device = self.device.trim().to_string();
        c.pretrained = match self.pretrained.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) => {
                let path = PathBuf::from(p);
                if !path.is_file() {
                    return Err(invalid("pretrained weights", format!("{p} is not a file")));
                }
                Some(path)
            }
        };
        if !STRATEGY_NAMES.contains(&self.strategy.as_str()) {
            return Err(invalid(
                "strategy",
                format!("unknown strategy {:?}; valid: {}", self.strategy, STRATEGY_NAMES.join(", ")),
            ));
        }
        if self.budget == 0 {
            return Err(invalid("budget", "must be at least 1".into()));
        }
        c.validate().map_err(|reason| invalid("training settings", reason))?;
        let initial =
            if self.initial == 0 { InitialSet::AlreadyLabeled } else { InitialSet::Random(self.initial) };
        Ok(RoundSpec {
            strategy: self.strategy.clone(),
            budget: self.budget,
            config: c,
            seed: self.seed,
            initial,
        })
    }
}

/// A device the user may pick.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceOption {
    pub id: String,
    pub label: String,
    pub available: bool,
    pub reason: Option<String>,
}

/// What the training form offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingOptions {
    pub devices: Vec<DeviceOption>,
    pub models: Vec<String>,
    pub presets: Vec<String>,
    pub strategies: Vec<String>,
    pub defaults: TrainSettings,
}

/// A progress event of the running round.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundProgressInfo {
    pub round: i64,
    pub stage: String,
    pub done: u64,
    pub total: Option<u64>,
    pub message: Option<String>,
    /// loss, loss_sup, loss_cps, loss_con, lr, img_per_s, and the trainer's own names.
    pub metrics: BTreeMap<String, f64>,
    pub elapsed_seconds: f64,
    pub eta_seconds: Option<f64>,
}

impl RoundProgressInfo {
    /// The event for `p` of round `round`, `elapsed` seconds after it started, with the stage's ETA when
    /// known; the loss terms get the names the UI plots (`loss_sup`, `loss_cps` = both pseudo terms,
    /// `loss_con`, `img_per_s`). The trainer's own ETA (`eta_s`) wins over `eta`.
    pub fn new(round: i64, p: &Progress, elapsed: f64, eta: Option<f64>) -> Self {
        let mut metrics: BTreeMap<String, f64> = p.metrics.iter().cloned().collect();
        let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied();
        if let Some(v) = get(&metrics, "supervised") {
            metrics.insert("loss_sup".into(), v);
        }
        if let (Some(a), Some(b)) = (get(&metrics, "pseudo_a"), get(&metrics, "pseudo_b")) {
            metrics.insert("loss_cps".into(), a + b);
        }
        if let Some(v) = get(&metrics, "contrastive") {
            metrics.insert("loss_con".into(), v);
        }
        if let Some(v) = get(&metrics, "images_per_s") {
            metrics.insert("img_per_s".into(), v);
        }
        let eta_seconds = get(&metrics, "eta_s").or(eta);
        RoundProgressInfo {
            round,
            stage: p.stage.clone(),
            done: p.done,
            total: p.total,
            message: p.message.clone(),
            metrics,
            elapsed_seconds: elapsed,
            eta_seconds,
        }
    }
}

/// What a finished round reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundSummaryInfo {
    pub round: i64,
    pub strategy: String,
    pub trained: bool,
    pub device: Option<String>,
    pub labeled: usize,
    pub queries: Vec<i64>,
    pub topped_up: usize,
    pub note: Option<String>,
    pub total_seconds: f64,
    pub metrics: BTreeMap<String, f64>,
}

impl From<RoundSummary> for RoundSummaryInfo {
    fn from(s: RoundSummary) -> Self {
        RoundSummaryInfo {
            round: s.round,
            strategy: s.strategy,
            trained: s.trained,
            device: s.device,
            labeled: s.labeled,
            queries: s.queries,
            topped_up: s.topped_up,
            note: s.note,
            total_seconds: s.timings.total_s,
            metrics: s.metrics,
        }
    }
}

/// The end of a round.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundFinished {
    /// The round that ended (also for a failed or cancelled one).
    pub round: i64,
    pub summary: Option<RoundSummaryInfo>,
    pub cancelled: bool,
    pub error: Option<serde_json::Value>,
}

/// Whether a round runs, and its latest progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingState {
    pub running: bool,
    pub progress: Option<RoundProgressInfo>,
}

/// A stored round, any status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundInfo {
    pub id: i64,
    pub status: String,
    pub strategy: Option<String>,
    pub budget: Option<i64>,
    pub device: Option<String>,
    pub model: Option<String>,
    pub labeled: usize,
    pub metrics: BTreeMap<String, f64>,
    pub note: Option<String>,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub total_seconds: Option<f64>,
}

impl From<RoundRecord> for RoundInfo {
    fn from(r: RoundRecord) -> Self {
        let trained = r.config.is_some();
        RoundInfo {
            id: r.id,
            status: r.status.as_str().into(),
            strategy: r.strategy,
            budget: r.budget,
            device: r.device,
            model: r.config.as_ref().map(|c| c.arch.name().to_string()),
            labeled: r.labeled.len(),
            metrics: r.metrics,
            note: r.note,
            error: r.error,
            started_at: r.started_at,
            finished_at: r.finished_at,
            total_seconds: trained.then_some(r.timings.total_s),
        }
    }
}
