//! The training job: one active-learning round of the open project on a background thread, with
//! progress events (`round-progress`: stage, iteration, losses, images/s, ETA), cancellation, and the
//! summary or the error in words at the end (`round-finished`). The round has its own connection to the
//! project file, so labeling goes on in the grid while it trains.

use crate::error::{AppError, AppResult};
use crate::eta::{estimate, Throttle};
use crate::ipc_train::{
    DeviceOption, RoundFinished, RoundProgressInfo, TrainSettings, TrainingOptions, TrainingState,
};
use crate::state::AppState;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tauri::{AppHandle, Emitter, Manager, State};
use unisal_core::events::{CancelToken, Progress};
use unisal_core::learner::PRESETS;
use unisal_core::round::{run_round, RoundSpec, RoundSummary};
use unisal_core::selection::STRATEGY_NAMES;
use unisal_core::{CoreError, Pool};
use unisal_train::device::DeviceChoice;
use unisal_train::trainer::DualTrainer;

/// Event carrying [`RoundProgressInfo`].
pub const PROGRESS_EVENT: &str = "round-progress";
/// Event carrying [`RoundFinished`].
pub const FINISHED_EVENT: &str = "round-finished";

/// The devices, models, presets and strategies the form offers, with defaults for this machine.
#[tauri::command]
pub async fn training_options() -> AppResult<TrainingOptions> {
    let devices = device_options();
    let gpu = devices.iter().any(|d| d.available && d.id != "cpu" && d.id != "auto");
    Ok(TrainingOptions {
        devices,
        models: ["small", "resnet18", "resnet50"].map(String::from).to_vec(),
        presets: PRESETS.map(String::from).to_vec(),
        strategies: STRATEGY_NAMES.map(String::from).to_vec(),
        defaults: TrainSettings::defaults(gpu),
    })
}

/// Probes every device kind: CPU always; CUDA and Metal when compiled in and present.
pub fn device_options() -> Vec<DeviceOption> {
    let probe = |choice: DeviceChoice, id: &str, label: &str| match choice.resolve() {
        Ok(_) => DeviceOption { id: id.into(), label: label.into(), available: true, reason: None },
        Err(e) => {
            DeviceOption { id: id.into(), label: label.into(), available: false, reason: Some(e.to_string()) }
        }
    };
    let cuda = probe(DeviceChoice::Cuda(0), "cuda", "CUDA GPU");
    let metal = probe(DeviceChoice::Metal(0), "metal", "Metal GPU");
    let auto_label = if cuda.available {
        "Auto (CUDA GPU)"
    } else if metal.available {
        "Auto (Metal GPU)"
    } else {
        "Auto (CPU: no GPU found)"
    };
    let auto = DeviceOption { id: "auto".into(), label: auto_label.into(), available: true, reason: None };
    let cpu = DeviceOption { id: "cpu".into(), label: "CPU".into(), available: true, reason: None };
    vec![auto, cpu, cuda, metal]
}

/// Starts a round of the open project with `settings`; returns its number at once. One job at a time.
#[tauri::command]
pub async fn start_round(
    app: AppHandle,
    state: State<'_, AppState>,
    settings: TrainSettings,
) -> AppResult<i64> {
    let spec = settings.to_spec()?;
    let project = state.project_path()?;
    let round = state.with_pool(|pool| Ok(pool.next_round_id()?))?;
    let cancel = state.begin_training()?;
    let job_app = app.clone();
    let spawned = std::thread::Builder::new().name("round".into()).spawn(move || {
        let emit = |event: RoundProgressInfo| {
            job_app.state::<AppState>().set_training_progress(event.clone());
            // A window that is gone cannot be told; the round goes on.
            let _ = job_app.emit(PROGRESS_EVENT, event);
        };
        let result = run_training(&project, round, &spec, &cancel, emit);
        job_app.state::<AppState>().end_training();
        let finished = finished_event(round, result);
        if let Err(e) = job_app.emit(FINISHED_EVENT, finished) {
            eprintln!("could not send the end of the round to the window: {e}");
        }
    });
    if let Err(source) = spawned {
        state.end_training();
        return Err(AppError::Io {
            action: "starting the training thread for",
            path: PathBuf::new(),
            source,
        });
    }
    Ok(round)
}

/// Asks the running round to stop at its next iteration; false when none runs.
#[tauri::command]
pub async fn cancel_round(state: State<'_, AppState>) -> AppResult<bool> {
    Ok(state.cancel_training())
}

/// Whether a round runs, with its latest progress.
#[tauri::command]
pub async fn training_state(state: State<'_, AppState>) -> AppResult<TrainingState> {
    Ok(TrainingState { running: state.training_running(), progress: state.training_progress() })
}

/// Runs one round of the project file `project` over a connection of its own, passing throttled progress
/// events to `emit` (every stage change and stage end, otherwise at most 10 a second).
pub fn run_training(
    project: &Path,
    round: i64,
    spec: &RoundSpec,
    cancel: &CancelToken,
    emit: impl Fn(RoundProgressInfo) + Send + Sync,
) -> Result<RoundSummary, CoreError> {
    let mut pool = Pool::open(project)?;
    let reporter = RoundReporter::new(round, Duration::from_millis(100));
    let sink = |p: &Progress| {
        if let Some(event) = reporter.event(p, Instant::now()) {
            emit(event);
        }
    };
    let mut learner = DualTrainer::new();
    run_round(&mut pool, &mut learner, spec, &sink, cancel)
}

/// The end event of round `round`'s result.
pub fn finished_event(round: i64, result: Result<RoundSummary, CoreError>) -> RoundFinished {
    match result {
        Ok(summary) => RoundFinished { round, summary: Some(summary.into()), cancelled: false, error: None },
        Err(CoreError::Cancelled(_)) => RoundFinished { round, summary: None, cancelled: true, error: None },
        Err(e) => RoundFinished {
            round,
            summary: None,
            cancelled: false,
            error: serde_json::to_value(AppError::Core(e)).ok(),
        },
    }
}

/// Turns progress reports into throttled events with the elapsed time and the stage's ETA.
pub struct RoundReporter {
    round: i64,
    started: Instant,
    /// The throttle, and the current stage with its start.
    inner: Mutex<(Throttle, Option<(String, Instant)>)>,
}

impl RoundReporter {
    /// A reporter for round `round` that lets at most one event through per `every` within a stage.
    pub fn new(round: i64, every: Duration) -> Self {
        RoundReporter { round, started: Instant::now(), inner: Mutex::new((Throttle::new(every), None)) }
    }

    /// The event for `p` at `now`, or `None` when throttled.
    pub fn event(&self, p: &Progress, now: Instant) -> Option<RoundProgressInfo> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (throttle, stage) = &mut *inner;
        let new_stage = stage.as_ref().is_none_or(|(s, _)| *s != p.stage);
        if new_stage {
            *stage = Some((p.stage.clone(), now));
        }
        let stage_end = p.total == Some(p.done);
        if !throttle.ready(now, new_stage || stage_end) {
            return None;
        }
        let stage_started = stage.as_ref().map_or(now, |(_, t)| *t);
        let (_, eta) = estimate(p.done, p.total, now.duration_since(stage_started));
        let elapsed = now.duration_since(self.started).as_secs_f64();
        Some(RoundProgressInfo::new(self.round, p, elapsed, eta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporter_passes_stage_changes_and_ends_and_throttles_the_rest() {
        let r = RoundReporter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let first = r.event(&Progress::new("train", 1, Some(10)), t0).expect("a new stage always passes");
        assert_eq!((first.round, first.stage.as_str(), first.done), (3, "train", 1));
        assert!(r.event(&Progress::new("train", 2, Some(10)), t0 + Duration::from_secs(1)).is_none());
        let end = r.event(&Progress::new("train", 10, Some(10)), t0 + Duration::from_secs(9)).unwrap();
        assert_eq!(end.eta_seconds, Some(0.0));
        let next = r.event(&Progress::new("predict", 5, Some(15)), t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(next.stage, "predict");
    }

    #[test]
    fn loss_terms_get_the_names_the_ui_plots() {
        let mut p = Progress::new("train", 4, Some(8));
        p.metrics = vec![
            ("loss".into(), 2.0),
            ("supervised".into(), 1.0),
            ("pseudo_a".into(), 0.25),
            ("pseudo_b".into(), 0.5),
            ("contrastive".into(), 0.1),
            ("images_per_s".into(), 42.0),
            ("eta_s".into(), 7.0),
        ];
        let e = RoundProgressInfo::new(1, &p, 3.0, Some(99.0));
        assert_eq!(e.metrics["loss_sup"], 1.0);
        assert_eq!(e.metrics["loss_cps"], 0.75);
        assert_eq!(e.metrics["loss_con"], 0.1);
        assert_eq!(e.metrics["img_per_s"], 42.0);
        assert_eq!(e.eta_seconds, Some(7.0), "the trainer's ETA wins");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["elapsedSeconds"], 3.0);
    }

    #[test]
    fn settings_are_checked_field_by_field() {
        let ok = TrainSettings::defaults(false);
        let spec = ok.to_spec().unwrap();
        assert_eq!(spec.config.preset, "cpu-small");
        assert_eq!(spec.budget, 40);
        let bad = |f: fn(&mut TrainSettings)| {
            let mut s = TrainSettings::defaults(false);
            f(&mut s);
            s.to_spec().unwrap_err().to_string()
        };
        assert!(bad(|s| s.model = "vit".into()).contains("model"));
        assert!(bad(|s| s.size = 8).contains("input size"));
        assert!(bad(|s| s.iterations = 0).contains("iterations"));
        assert!(bad(|s| s.batch = 0).contains("batch"));
        assert!(bad(|s| s.strategy = "best".into()).contains("strategy"));
        assert!(bad(|s| s.budget = 0).contains("budget"));
        assert!(bad(|s| s.preset = "x".into()).contains("preset"));
        assert!(
            bad(|s| s.pretrained = Some("/no/such/file.safetensors".into())).contains("pretrained weights")
        );
        let mut big = TrainSettings::defaults(false);
        big.size = 96;
        let spec = big.to_spec().unwrap();
        assert_eq!((spec.config.crop, spec.config.resize), (96, 108));
    }

    #[test]
    fn the_end_event_says_cancelled_or_the_error_in_words() {
        let e = finished_event(4, Err(CoreError::Cancelled(String::new())));
        assert!(e.cancelled && e.summary.is_none() && e.error.is_none());
        assert_eq!(e.round, 4);
        let e = finished_event(
            4,
            Err(CoreError::Invalid { field: "pool", reason: "every patch is labeled".into() }),
        );
        let msg = e.error.unwrap()["message"].as_str().unwrap().to_string();
        assert!(msg.contains("every patch is labeled"), "{msg}");
    }
}
