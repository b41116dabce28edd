//! ResNet blocks for `layers_gradcheck_device.rs`: their vars, and the blocks built from them and run in train mode
//! as one op (`nn::blocks::blocks_train_in`, in either layout) or layer by layer.

use candle_core::{Device, Tensor, Var};
use unisal_train::nn::blocks::{blocks_train_in, stem_blocks_train_in, BlockLayout};
use unisal_train::nn::fused::conv_bn_train;
use unisal_train::nn::{add_relu, max_pool2d, BatchNorm2d, Conv2d};

use super::pair;

/// A ResNet block: its input's dims, its main path's convolutions `(c_in, c_out, k, stride)` and its downsample's
/// stride (none: the identity).
pub type BlockSpec = ([usize; 4], Vec<(usize, usize, usize, usize)>, Option<usize>);
/// Each var as its f64 CPU and its device twin.
pub type Vars = Vec<(Var, Var)>;

/// A ResNet stem before the blocks: the images' dims and the stem convolution's output channels (7x7, stride 2,
/// padding 3, then batch norm, ReLU and a 3x3 stride-2 max pool).
pub type StemSpec = ([usize; 4], usize);

/// The vars of blocks one after the other (the input, the images with a stem; then each convolution's weight, gamma
/// and beta: the stem's, then each block's main path then its downsample) and `f(vars, x, as_op)` building the
/// stem and blocks from them and running them in train mode: with `as_op` as one op in that layout where it runs
/// (`stem_blocks_train_in` with a stem, unless `UNISAL_BLOCK_STEM=0`; else the stem layer by layer, then
/// `blocks_train_in`), which on CUDA with our kernels it must, else (or without `as_op`) layer by layer.
pub fn block_case(
    stem: Option<StemSpec>,
    specs: &[BlockSpec],
    seed: u64,
    dev: &Device,
) -> (Vars, impl Fn(&[&Var], Tensor, Option<BlockLayout>) -> Tensor) {
    // (layers (c_in, c_out, k, stride), main-path length) of the stem (one layer, no join) and each block.
    let mut groups = Vec::new();
    if let Some((images, out)) = stem {
        groups.push((vec![(images[1], out, 7, 2)], 1));
    }
    for (xs, main, down) in specs {
        let mut layers = main.clone();
        if let Some(s) = down {
            layers.push((xs[1], main.last().unwrap().1, 1, *s));
        }
        groups.push((layers, main.len()));
    }
    let input = stem.map_or(specs[0].0, |(images, _)| images);
    let mut vars = vec![pair(&input, seed, false, dev)];
    for (i, &(ci, co, k, _)) in groups.iter().flat_map(|b| &b.0).enumerate() {
        let s = seed + 1 + 3 * i as u64;
        vars.extend([
            pair(&[co, ci, k, k], s, false, dev),
            pair(&[co], s + 1, false, dev),
            pair(&[co], s + 2, false, dev),
        ]);
    }
    let run = move |v: &[&Var], x: Tensor, as_op: Option<BlockLayout>| {
        let mut at = 0;
        let mut built = Vec::new();
        for (layers, main) in &groups {
            let cbn = |i: usize| {
                let (_, co, k, s) = layers[i];
                let j = at + i;
                let (d, dt) = (v[1].device(), v[1].dtype());
                let (rm, rv) = (Var::zeros(co, dt, d).unwrap(), Var::ones(co, dt, d).unwrap());
                let bn = BatchNorm2d::from_vars(v[2 + 3 * j].clone(), v[3 + 3 * j].clone(), rm, rv);
                (Conv2d::from_vars(v[1 + 3 * j].clone(), None, s, k / 2), bn)
            };
            let convs: Vec<_> = (0..*main).map(cbn).collect();
            let ds = (layers.len() > *main).then(|| cbn(*main));
            at += layers.len();
            built.push((convs, ds));
        }
        let (stem_layer, built) = match stem {
            Some(_) => (built.first().map(|(c, _)| &c[0]), &built[1..]),
            None => (None, &built[..]),
        };
        let refs: Vec<_> = built.iter().map(|(c, d)| (&c[..], d.as_ref())).collect();
        let kernels = std::env::var("UNISAL_GPU_KERNELS").map_or(true, |v| v.trim() != "0");
        let must_run = x.device().is_cuda() && kernels;
        if let (Some(layout), Some((conv, bn))) = (as_op, stem_layer) {
            if let Some(y) = stem_blocks_train_in(&x, ((conv, bn), (3, 2, 1)), &refs, layout).unwrap() {
                return y;
            }
            let stem_on = std::env::var("UNISAL_BLOCK_STEM")
                .map_or(true, |v| !matches!(v.trim(), "0" | "false" | "off"));
            assert!(!(must_run && stem_on), "the stem did not run in the op on CUDA ({layout:?})");
        }
        let mut x = match stem_layer {
            Some((conv, bn)) => max_pool2d(&conv_bn_train(conv, bn, &x, true).unwrap(), 3, 2, 1).unwrap(),
            None => x,
        };
        if let Some(layout) = as_op {
            if let Some(y) = blocks_train_in(&x, &refs, layout).unwrap() {
                return y;
            }
            assert!(!must_run, "the block op did not run on CUDA");
        }
        for (convs, ds) in built {
            let mut y = x.clone();
            for (i, (conv, bn)) in convs.iter().enumerate() {
                y = conv_bn_train(conv, bn, &y, i + 1 < convs.len()).unwrap();
            }
            let identity =
                ds.as_ref().map_or(x.clone(), |(conv, bn)| conv_bn_train(conv, bn, &x, false).unwrap());
            x = add_relu(&y, &identity).unwrap();
        }
        x
    };
    (vars, run)
}
