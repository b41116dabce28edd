//! Query batch, review list, histogram and results commands: reads of the open project mapped to the
//! IPC types of [`crate::ipc_review`] and [`crate::ipc_train`].

use crate::commands::check_limit;
use crate::error::{AppError, AppResult};
use crate::ipc_review::{
    CurvePointOut, HistogramOut, NetworkConfusionOut, QueryBatchOut, ReviewPageOut, ReviewQueryIn,
};
use crate::ipc_train::RoundInfo;
use crate::state::AppState;
use tauri::State;
use unisal_core::Pool;

/// The most bins a histogram may have.
pub const MAX_BINS: usize = 200;

/// The query batch of `round`, or of the newest round that has one; null when none exists.
#[tauri::command]
pub async fn query_batch(state: State<'_, AppState>, round: Option<i64>) -> AppResult<Option<QueryBatchOut>> {
    state.with_pool(|pool| Ok(pool.query_batch(round)?.map(Into::into)))
}

/// One page of the whole pool, sorted and filtered.
#[tauri::command]
pub async fn review_page(
    state: State<'_, AppState>,
    query: ReviewQueryIn,
    offset: u64,
    limit: u64,
) -> AppResult<ReviewPageOut> {
    check_limit(limit)?;
    let query = query.into();
    state.with_pool(|pool| Ok(pool.review_page(&query, offset, limit)?.into()))
}

/// Disagreement scores of `round` (or of the newest round with predictions) in `bins` bins; null when no
/// round has predictions yet.
#[tauri::command]
pub async fn disagreement_histogram(
    state: State<'_, AppState>,
    round: Option<i64>,
    bins: usize,
) -> AppResult<Option<HistogramOut>> {
    if bins == 0 || bins > MAX_BINS {
        return Err(AppError::Invalid {
            field: "bins",
            reason: format!("must be 1..={MAX_BINS}, got {bins}"),
        });
    }
    state.with_pool(|pool| match resolve_round(pool, round)? {
        Some(r) => Ok(Some(pool.disagreement_histogram(r, bins)?.into())),
        None => Ok(None),
    })
}

/// Every stored round, oldest first.
#[tauri::command]
pub async fn rounds(state: State<'_, AppState>) -> AppResult<Vec<RoundInfo>> {
    state.with_pool(|pool| Ok(pool.rounds()?.into_iter().map(Into::into).collect()))
}

/// The learning curve: one point per trained round.
#[tauri::command]
pub async fn learning_curve(state: State<'_, AppState>) -> AppResult<Vec<CurvePointOut>> {
    state.with_pool(|pool| Ok(pool.learning_curve()?.into_iter().map(Into::into).collect()))
}

/// Network A's predictions against network B's in `round` (or the newest round with predictions).
#[tauri::command]
pub async fn network_confusion(
    state: State<'_, AppState>,
    round: Option<i64>,
) -> AppResult<Option<NetworkConfusionOut>> {
    state.with_pool(|pool| match resolve_round(pool, round)? {
        Some(r) => Ok(Some(pool.network_confusion(r)?.into())),
        None => Ok(None),
    })
}

fn resolve_round(pool: &Pool, round: Option<i64>) -> AppResult<Option<i64>> {
    match round {
        Some(r) => Ok(Some(r)),
        None => Ok(pool.latest_predicted_round()?),
    }
}
