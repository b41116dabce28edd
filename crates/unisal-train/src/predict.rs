//! Prediction with the trained pair (UNISAL.md sections 1.5 and 2.1): evaluation view, BatchNorm in eval mode,
//! per-network probabilities and argmax, the ensemble class from the averaged logits, and the averaged
//! projection (zA + zB) / 2 for every patch. Batches are decoded on worker threads ahead of the device.

use crate::error::{Result, TrainError};
use crate::models::Network;
use crate::pipeline::{eval_batch, prefetch_ordered, EvalBatch, ImageCache};
use candle_core::{DType, Tensor};
use unisal_core::events::{CancelToken, Progress, ProgressSink};
use unisal_core::learner::{ImageSource, PatchPrediction};

/// How to run a prediction pass.
#[derive(Debug, Clone, Copy)]
pub struct PredictOptions {
    pub batch: usize,
    pub workers: usize,
    pub prefetch: usize,
}

fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc })
        .0 as u32
}

fn softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(crate::loss::log_softmax(logits)?.exp()?.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

/// Predicts one prepared batch with both networks.
pub fn predict_batch(a: &Network, b: &Network, batch: &EvalBatch) -> Result<Vec<PatchPrediction>> {
    let n = batch.ids.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let s = batch.side as usize;
    let x = Tensor::from_slice(&batch.data, (n, 3, s, s), a.device())?;
    // No autograd graph: each activation is freed once the next layer has used it.
    let _no_grad = crate::nn::NoGrad::enter();
    let oa = a.forward(&x, false)?;
    let ob = b.forward(&x, false)?;
    let pa = softmax_rows(&oa.logits)?;
    let pb = softmax_rows(&ob.logits)?;
    let mean_logits = ((&oa.logits + &ob.logits)? * 0.5)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let emb = ((&oa.proj + &ob.proj)? * 0.5)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok((0..n)
        .map(|i| PatchPrediction {
            patch_id: batch.ids[i],
            pred_a: argmax(&pa[i]),
            pred_b: argmax(&pb[i]),
            pred: argmax(&mean_logits[i]),
            prob_a: pa[i].clone(),
            prob_b: pb[i].clone(),
            embedding: emb[i].clone(),
        })
        .collect())
}

/// Predicts `ids` (in order) with the pair, reporting progress as stage `predict` and checking `cancel`
/// before every batch.
#[allow(clippy::too_many_arguments)]
pub fn predict_pair(
    a: &Network,
    b: &Network,
    ids: &[i64],
    cache: &ImageCache,
    source: &dyn ImageSource,
    opts: PredictOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<Vec<PatchPrediction>> {
    let batch = opts.batch.max(1);
    let chunks: Vec<&[i64]> = ids.chunks(batch).collect();
    let mut out = Vec::with_capacity(ids.len());
    let total = ids.len() as u64;
    prefetch_ordered(
        chunks.len() as u64,
        opts.workers,
        opts.prefetch,
        |j| eval_batch(cache, source, chunks[j as usize]),
        |_, prepared| {
            if cancel.is_cancelled() {
                return Err(TrainError::Cancelled);
            }
            out.extend(predict_batch(a, b, &prepared)?);
            progress.report(&Progress::new("predict", out.len() as u64, Some(total)));
            Ok(())
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
        assert_eq!(argmax(&[2.0]), 0);
    }
}
