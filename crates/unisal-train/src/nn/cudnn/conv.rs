//! A convolution on the GPU as one candle custom op: cuDNN's forward, and a backward of cuDNN's backward-data and
//! backward-filter (candle 0.11.1 uses cuDNN for the forward only; its backward is a naive `conv_transpose2d` and
//! a convolution per weight gradient, and fails for stride 2 on non-square inputs).
//!
//! The algorithms come from cuDNN's heuristics (`cudnnGetConvolution*Algorithm_v7`, what PyTorch does without
//! `cudnn.benchmark`), once per geometry and thread. The backward returns `[dx | dW]` in one buffer, or only `dW`
//! where nothing needs `dx` (the images into the first layer). The backward is not itself differentiable.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_int;

use candle_core::cuda_backend::cudarc::cudnn::sys;
use candle_core::{CudaStorage, Layout, Shape, Tensor};

use super::handle::{check, input, output, ptr, ptr_mut, scale, storage, with_handle, workspace, ONE, ZERO};
use super::handle::{ConvDesc, FilterDesc, TensorDesc};
use super::tf32_allowed;
use crate::nn::im2col::Geometry;

/// `(x [N, C, H, W], w [O, C, k, k]) -> y [N, O, Ho, Wo]`, f32, contiguous.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvCudnn {
    pub g: Geometry,
    pub out: usize,
}

/// The four descriptors of one convolution.
struct Descs {
    x: TensorDesc,
    w: FilterDesc,
    conv: ConvDesc,
    y: TensorDesc,
}

impl ConvCudnn {
    fn check(&self, x: &Layout, w: &Layout) -> candle_core::Result<()> {
        let g = self.g;
        if x.shape().dims() != [g.n, g.c, g.h, g.w] || w.shape().dims() != [self.out, g.c, g.k, g.k] {
            candle_core::bail!("conv2d: input {:?} / weight {:?} do not fit {g:?}", x.shape(), w.shape());
        }
        Ok(())
    }

    fn out_shape(&self) -> Shape {
        Shape::from((self.g.n, self.out, self.g.ho(), self.g.wo()))
    }

    fn descs(&self) -> candle_core::Result<Descs> {
        let g = self.g;
        Ok(Descs {
            x: TensorDesc::nchw([g.n, g.c, g.h, g.w])?,
            w: FilterDesc::new([self.out, g.c, g.k, g.k])?,
            conv: ConvDesc::new(g.pad, g.stride)?,
            y: TensorDesc::nchw([g.n, self.out, g.ho(), g.wo()])?,
        })
    }

    /// Cache key: the geometry, the pass and whether TF32 was allowed.
    fn key(&self, pass: u8) -> [usize; 10] {
        let g = self.g;
        [g.n, g.c, g.h, g.w, g.k, g.stride, g.pad, self.out, pass as usize, tf32_allowed() as usize]
    }
}

/// The algorithm of one of the three passes.
#[derive(Debug, Clone, Copy)]
enum Algo {
    Fwd(sys::cudnnConvolutionFwdAlgo_t),
    Data(sys::cudnnConvolutionBwdDataAlgo_t),
    Filter(sys::cudnnConvolutionBwdFilterAlgo_t),
}

/// An algorithm choice of one pass: the algorithm and its math type (its workspace is asked for at each call).
#[derive(Debug, Clone, Copy)]
struct Choice {
    algo: Algo,
    math: sys::cudnnMathType_t,
}

thread_local! {
    static CHOICES: RefCell<HashMap<[usize; 10], Choice>> = RefCell::new(HashMap::new());
}

/// The fields of cuDNN's three `*AlgoPerf` structs that a choice needs.
trait Perf: Copy {
    fn fields(&self) -> (Algo, sys::cudnnStatus_t, usize, sys::cudnnMathType_t);
}

macro_rules! perf {
    ($($t:ty => $v:ident),*) => {$(
        impl Perf for $t {
            fn fields(&self) -> (Algo, sys::cudnnStatus_t, usize, sys::cudnnMathType_t) {
                (Algo::$v(self.algo), self.status, self.memory, self.mathType)
            }
        }
    )*};
}
perf!(
    sys::cudnnConvolutionFwdAlgoPerf_t => Fwd,
    sys::cudnnConvolutionBwdDataAlgoPerf_t => Data,
    sys::cudnnConvolutionBwdFilterAlgoPerf_t => Filter
);

/// The most workspace one convolution may take.
const MAX_WORKSPACE: usize = 2 << 30;

/// The first of cuDNN's ranked results that ran, fits [`MAX_WORKSPACE`] and keeps to the allowed math.
fn choose<P: Perf>(what: &str, results: &[P]) -> candle_core::Result<Choice> {
    use sys::cudnnMathType_t as M;
    let tf32 = tf32_allowed();
    results
        .iter()
        .map(Perf::fields)
        .find(|&(_, status, bytes, math)| {
            status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                && bytes <= MAX_WORKSPACE
                && (tf32
                    || !matches!(math, M::CUDNN_TENSOR_OP_MATH | M::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        })
        // Without TF32 the descriptor keeps FMA math: cuDNN's default math would allow TF32 on Ampere and later.
        .map(|(algo, _, _, math)| Choice { algo, math: if tf32 { math } else { M::CUDNN_FMA_MATH } })
        .ok_or_else(|| candle_core::Error::Msg(format!("cuDNN {what}: no usable algorithm")))
}

/// The cached choice for `key`, or the heuristics' (`query` fills up to `n` ranked results and their count).
fn cached<P: Perf>(
    key: [usize; 10],
    what: &str,
    n: usize,
    query: impl FnOnce(*mut P, *mut c_int) -> sys::cudnnStatus_t,
) -> candle_core::Result<Choice> {
    if let Some(c) = CHOICES.with(|m| m.borrow().get(&key).copied()) {
        return Ok(c);
    }
    // SAFETY: the perf structs are plain C data; cuDNN fills the first `count` of them.
    let mut results: Vec<P> = vec![unsafe { std::mem::zeroed() }; n];
    let mut count: c_int = 0;
    check(query(results.as_mut_ptr(), &mut count), what)?;
    results.truncate(count.clamp(0, n as c_int) as usize);
    let choice = choose(what, &results)?;
    CHOICES.with(|m| m.borrow_mut().insert(key, choice));
    Ok(choice)
}

impl candle_core::CustomOp2 for ConvCudnn {
    fn name(&self) -> &'static str {
        "conv2d-cudnn"
    }

    super::cuda_only_cpu_fwd!(CustomOp2);

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        self.check(xl, wl)?;
        let (x, w) = (input(xs, xl, "conv2d")?, input(ws, wl, "conv2d")?);
        let shape = self.out_shape();
        let d = self.descs()?;
        with_handle(&xs.device, "conv-forward", |h, stream| {
            let what = "convolution forward";
            let choice = cached(self.key(0), what, 8, |res, count| unsafe {
                sys::cudnnGetConvolutionForwardAlgorithm_v7(h, d.x.0, d.w.0, d.conv.0, d.y.0, 8, count, res)
            })?;
            check(unsafe { sys::cudnnSetConvolutionMathType(d.conv.0, choice.math) }, what)?;
            let Algo::Fwd(algo) = choice.algo else {
                candle_core::bail!("cuDNN {what}: wrong algorithm kind")
            };
            let mut bytes = 0;
            check(
                unsafe {
                    sys::cudnnGetConvolutionForwardWorkspaceSize(
                        h, d.x.0, d.w.0, d.conv.0, d.y.0, algo, &mut bytes,
                    )
                },
                what,
            )?;
            let mut y = output(stream, shape.elem_count())?;
            let mut ws_buf = workspace(stream, bytes)?;
            {
                let (xp, _gx) = ptr(&x, stream);
                let (wp, _gw) = ptr(&w, stream);
                let (yp, _gy) = ptr_mut(&mut y, stream);
                let (wsp, _gs) = ws_buf.as_mut().map(|b| ptr_mut(b, stream)).unzip();
                let wsp = wsp.unwrap_or(std::ptr::null_mut());
                check(
                    unsafe {
                        sys::cudnnConvolutionForward(
                            h,
                            scale(&ONE),
                            d.x.0,
                            xp,
                            d.w.0,
                            wp,
                            d.conv.0,
                            algo,
                            wsp,
                            bytes,
                            scale(&ZERO),
                            d.y.0,
                            yp,
                        )
                    },
                    what,
                )?;
            }
            Ok((storage(y, &xs.device), shape))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        crate::nn::conv::conv_grads(x, w, grad, |need_dx| ConvCudnnBackward { conv: *self, need_dx })
    }
}

/// `(x, w, dy) -> [dx | dW]` (flat; only `dW` without `need_dx`), without backward.
#[derive(Debug, Clone, Copy)]
struct ConvCudnnBackward {
    conv: ConvCudnn,
    need_dx: bool,
}

impl candle_core::CustomOp3 for ConvCudnnBackward {
    fn name(&self) -> &'static str {
        "conv2d-cudnn-backward"
    }

    super::cuda_only_cpu_fwd!(CustomOp3);

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
        dys: &CudaStorage,
        dyl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let c = self.conv;
        c.check(xl, wl)?;
        if dyl.shape() != &c.out_shape() {
            candle_core::bail!("conv2d backward: gradient {:?} does not fit {:?}", dyl.shape(), c.g);
        }
        let (x, w, dy) = (input(xs, xl, "conv2d")?, input(ws, wl, "conv2d")?, input(dys, dyl, "conv2d")?);
        let (x_len, w_len) =
            (if self.need_dx { xl.shape().elem_count() } else { 0 }, wl.shape().elem_count());
        let d = c.descs()?;
        with_handle(&xs.device, "conv-backward", |h, stream| {
            let mut out = output(stream, x_len + w_len)?;
            let (dyp, _gdy) = ptr(&dy, stream);
            let what = "convolution backward filter";
            let choice = cached(c.key(2), what, 7, |res, count| unsafe {
                sys::cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                    h, d.x.0, d.y.0, d.conv.0, d.w.0, 7, count, res,
                )
            })?;
            check(unsafe { sys::cudnnSetConvolutionMathType(d.conv.0, choice.math) }, what)?;
            let Algo::Filter(algo) = choice.algo else {
                candle_core::bail!("cuDNN {what}: wrong algorithm kind")
            };
            let mut bytes = 0;
            check(
                unsafe {
                    sys::cudnnGetConvolutionBackwardFilterWorkspaceSize(
                        h, d.x.0, d.y.0, d.conv.0, d.w.0, algo, &mut bytes,
                    )
                },
                what,
            )?;
            {
                let mut ws_buf = workspace(stream, bytes)?;
                let (wsp, _gs) = ws_buf.as_mut().map(|b| ptr_mut(b, stream)).unzip();
                let mut dw = out.slice_mut(x_len..x_len + w_len);
                let (xp, _gx) = ptr(&x, stream);
                let (dwp, _gdw) = ptr_mut(&mut dw, stream);
                check(
                    unsafe {
                        sys::cudnnConvolutionBackwardFilter(
                            h,
                            scale(&ONE),
                            d.x.0,
                            xp,
                            d.y.0,
                            dyp,
                            d.conv.0,
                            algo,
                            wsp.unwrap_or(std::ptr::null_mut()),
                            bytes,
                            scale(&ZERO),
                            d.w.0,
                            dwp,
                        )
                    },
                    what,
                )?;
            }
            if self.need_dx {
                let what = "convolution backward data";
                let choice = cached(c.key(1), what, 6, |res, count| unsafe {
                    sys::cudnnGetConvolutionBackwardDataAlgorithm_v7(
                        h, d.w.0, d.y.0, d.conv.0, d.x.0, 6, count, res,
                    )
                })?;
                check(unsafe { sys::cudnnSetConvolutionMathType(d.conv.0, choice.math) }, what)?;
                let Algo::Data(algo) = choice.algo else {
                    candle_core::bail!("cuDNN {what}: wrong algorithm kind")
                };
                let mut bytes = 0;
                check(
                    unsafe {
                        sys::cudnnGetConvolutionBackwardDataWorkspaceSize(
                            h, d.w.0, d.y.0, d.conv.0, d.x.0, algo, &mut bytes,
                        )
                    },
                    what,
                )?;
                let mut ws_buf = workspace(stream, bytes)?;
                let (wsp, _gs) = ws_buf.as_mut().map(|b| ptr_mut(b, stream)).unzip();
                let mut dx = out.slice_mut(0..x_len);
                let (wp, _gw) = ptr(&w, stream);
                let (dxp, _gdx) = ptr_mut(&mut dx, stream);
                check(
                    unsafe {
                        sys::cudnnConvolutionBackwardData(
                            h,
                            scale(&ONE),
                            d.w.0,
                            wp,
                            d.y.0,
                            dyp,
                            d.conv.0,
                            algo,
                            wsp.unwrap_or(std::ptr::null_mut()),
                            bytes,
                            scale(&ZERO),
                            d.x.0,
                            dxp,
                        )
                    },
                    what,
                )?;
            }
            Ok((storage(out, &xs.device), Shape::from(x_len + w_len)))
        })
    }
}
