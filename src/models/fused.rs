//! Fused operations with hand-written backward passes, for the encoder's hot spots on libtorch.
//!
//! burn 0.22's autodiff has no backward of its own for layer norm, softmax or the tanh GELU:
//! it records each as the elementwise and reduction ops it is made of (about ten for a layer
//! norm, six for a tanh GELU) and runs each one's backward, over every token of every layer.
//! Here each is one recorded op: the forward is libtorch's fused kernel (`native_layer_norm`,
//! `softmax`, `gelu(approximate = "tanh")`) and the backward is libtorch's fused backward
//! (`_softmax_backward_data`, `gelu_backward`) or, for layer norm, whose backward kernel tch
//! does not expose, the closed form on the saved mean and reciprocal standard deviation.
//!
//! The fused path is taken for f32 libtorch tensors, tracked by burn's autodiff (training) or
//! not (inference, where the tanh GELU otherwise costs six passes); for anything else — the
//! flex backend, another dtype, gradient checkpointing — each function computes the same
//! formula with burn's own ops, so every backend gives the same function up to float rounding
//! (the tests below check values and gradients of both paths against each other).
//!
//! [`dropout`] needs no op of its own: on libtorch CPU it draws its mask from a counter-based
//! generator filled on every core (libtorch's `bernoulli_` runs on one), folds the `1 / keep`
//! scale into the mask and records one multiplication; [`dense`] runs a linear layer over the
//! rows of a `[B, L, in]` input as one matrix product.
//!
//! What this changes in training (RESULTS.md, "CPU training speed"): the fused ops and
//! [`dense`] round differently from burn's composed ops (a training run with burn's dropout
//! masks follows the composed ops' losses within 3e-7 over 208 steps); the dropout masks are
//! another random stream than burn's, so a run's figures are those of another seed.

use burn::nn::{Dropout, LayerNorm, Linear};
use burn::tensor::activation::{gelu_approximate, softmax as burn_softmax};
use burn::tensor::{Distribution, Tensor};

/// `l` over the last dimension of `x` as one `[rows, in] × [in, out]` product.
///
/// burn keeps `[B, L, in] × [in, out]` batched when `L` is a multiple of 32 (a tiling rule for
/// its GPU kernels), and libtorch runs that as B small products that each pack the weight again
/// (about 5 % of a CPU training step in packing and output scaling, RESULTS.md); folding the
/// rows first gives the one product a PyTorch `nn.Linear` runs.
pub fn dense<const D: usize>(l: &Linear, x: Tensor<D>) -> Tensor<D> {
    if D <= 2 {
        return l.forward(x);
    }
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = l.forward(x.reshape([rows, d_in]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// Dropout as `burn::nn::Dropout` (each element kept with probability `1 − prob` and scaled by
/// `1 / (1 − prob)`, in training on an autodiff device only), recording one multiplication.
///
/// On libtorch CPU the mask comes from [`mask_values`]: a counter-based generator keyed by one
/// 63-bit draw from the device's random stream, filled on every core. libtorch's own
/// `bernoulli_` (what burn's dropout and `torch.nn.functional.dropout` use) fills the mask on
/// one thread, which cost about a seventh of a training step on 2 cores (RESULTS.md). The masks
/// are as reproducible from the device seed as before, but not the same masks. Elsewhere (CUDA,
/// flex) burn's own Bernoulli mask is used, with the `1 / keep` scale folded into it.
pub fn dropout<const D: usize>(d: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !d.training.is_enabled() || !x.device().is_autodiff() || d.prob == 0.0 {
        return x;
    }
    let keep = 1.0 - d.prob;
    #[cfg(feature = "tch")]
    if let Some(mask) = tch_impl::cpu_dropout_mask(&x, keep) {
        return x * mask;
    }
    let mask = x.random_like(Distribution::Bernoulli(keep));
    x * (mask * (1.0 / keep))
}

/// Fills `out` with a dropout mask: element `i` is `1 / keep` with probability `keep`, else 0,
/// decided by the top 24 bits of `splitmix64(key + i · φ)` (φ = 2⁶⁴ / golden ratio) — the same
/// values for a key whatever the number of threads.
pub fn mask_values(key: u64, keep: f64, out: &mut [f32]) {
    use rayon::prelude::*;
    const PHI: u64 = 0x9E37_79B9_7F4A_7C15;
    const CHUNK: usize = 1 << 16;
    let threshold = (keep * (1u64 << 24) as f64).round() as u64;
    let scale = (1.0 / keep) as f32;
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let base = (c * CHUNK) as u64;
            for (j, v) in chunk.iter_mut().enumerate() {
                let mut z = key.wrapping_add((base + j as u64).wrapping_mul(PHI));
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                *v = if (z >> 40) < threshold { scale } else { 0.0 };
            }
        });
}

/// `ln` (a layer norm over the last dimension, `(x − mean) / sqrt(var + eps) · gamma + beta`)
/// applied to `x`; `eps` must be the one `ln` was built with (burn keeps it private).
pub fn layer_norm<const D: usize>(ln: &LayerNorm, x: Tensor<D>, eps: f64) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if let Some(beta) = &ln.beta {
        match tch_impl::layer_norm(x, ln.gamma.val(), beta.val(), eps) {
            Ok(y) => return y,
            Err(input) => return ln.forward(input),
        }
    }
    let _ = eps;
    ln.forward(x)
}

/// The tanh approximation of GELU (`gelu_new`):
/// `0.5 · x · (1 + tanh(sqrt(2/π) · (x + 0.044715 · x³)))`.
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    let x = match tch_impl::gelu_tanh(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    gelu_approximate(x)
}

/// Softmax over the last dimension.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    let x = match tch_impl::softmax_last(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn_softmax(x, D - 1)
}

#[cfg(feature = "tch")]
mod tch_impl {
    //! The libtorch side: each op on a tracked tensor (`Autodiff<LibTorch>`, no checkpointing)
    //! or a plain one (`LibTorch`); `Err` gives the inputs back for the generic path. burn marks
    //! burn-tch deprecated (in favour of CubeCL backends that do not build here); the crate uses it.
    #![allow(deprecated)]

    use burn::tensor::Tensor;
    use burn_autodiff::Autodiff;
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn_backend::BackendTypes;
    use burn_tch::{LibTorch, TchTensor};
    use tch::Kind;

    type Ad = Autodiff<LibTorch, NoCheckpointing>;
    type AdTensor = <Ad as BackendTypes>::FloatTensorPrimitive;

    /// An input as the fused path sees it.
    enum Handle {
        /// f32 on libtorch under autodiff.
        Tracked(AdTensor),
        /// f32 on libtorch, no autodiff.
        Plain(TchTensor),
    }

    fn f32_tch(t: &TchTensor) -> bool {
        t.tensor.kind() == Kind::Float
    }

    /// The libtorch primitive of `t`, where it is an f32 libtorch tensor.
    fn handle<const D: usize>(t: &Tensor<D>) -> Option<Handle> {
        if let Ok(a) = t.clone().try_into_primitive::<Ad>() {
            return f32_tch(a.primitive()).then_some(Handle::Tracked(a));
        }
        if let Ok(p) = t.clone().try_into_primitive::<LibTorch>() {
            return f32_tch(&p).then_some(Handle::Plain(p));
        }
        None
    }

    fn tracked<const D: usize>(t: AdTensor) -> Tensor<D> {
        Tensor::from_primitive::<Ad>(t)
    }

    fn plain<const D: usize>(t: tch::Tensor) -> Tensor<D> {
        Tensor::from_primitive::<LibTorch>(TchTensor::new(t))
    }

    /// The dropout mask (values `0` or `1 / keep`, a constant for autodiff) for `x`, where `x`
    /// is an f32 libtorch CPU tensor; its key is one draw from libtorch's CPU generator, which
    /// `Device::seed` seeds.
    pub(super) fn cpu_dropout_mask<const D: usize>(x: &Tensor<D>, keep: f64) -> Option<Tensor<D>> {
        let t = match handle(x)? {
            Handle::Tracked(a) => a.primitive().tensor.shallow_clone(),
            Handle::Plain(p) => p.tensor.shallow_clone(),
        };
        if t.device() != tch::Device::Cpu {
            return None;
        }
        let key =
            tch::Tensor::randint(i64::MAX, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0]);
        // Filled in place: no zeroed buffer of its own and no copy into libtorch.
        let mask = tch::Tensor::empty(t.size(), (Kind::Float, tch::Device::Cpu));
        let n = mask.numel();
        // SAFETY: a fresh contiguous f32 CPU tensor of n elements that nothing else holds yet.
        let out = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr() as *mut f32, n) };
        super::mask_values(key as u64, keep, out);
        Some(plain(mask))
    }

    // ------------------------------------------------------------------------------ layer norm

    #[derive(Debug)]
    struct LayerNormOp;

    impl Backward<LibTorch, 3> for LayerNormOp {
        /// The input, gamma, and the forward's per-row mean and 1/std (`[.., 1]`).
        type State = (TchTensor, TchTensor, TchTensor, TchTensor);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (x, gamma, mean, rstd) = ops.state;
            let g = grads.consume::<LibTorch>(&ops.node);
            let [px, pg, pb] = ops.parents;
            let h = *x.tensor.size().last().expect("layer norm of a scalar");
            let g2 = g.tensor.reshape([-1, h]);
            let xhat = (x.tensor.reshape([-1, h]) - mean.tensor.reshape([-1, 1]))
                * rstd.tensor.reshape([-1, 1]);
            if let Some(n) = pb {
                let db = g2.sum_dim_intlist(0, false, Kind::Float);
                grads.register::<LibTorch>(n.id, TchTensor::new(db));
            }
            if let Some(n) = pg {
                let dg = (&g2 * &xhat).sum_dim_intlist(0, false, Kind::Float);
                grads.register::<LibTorch>(n.id, TchTensor::new(dg));
            }
            if let Some(n) = px {
                // dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)), ĝ = g · gamma.
                let gx = &g2 * &gamma.tensor;
                let a = gx.mean_dim(-1, true, Kind::Float);
                let b = (&gx * &xhat).mean_dim(-1, true, Kind::Float);
                let dx = (gx - a - xhat * b) * rstd.tensor.reshape([-1, 1]);
                grads.register::<LibTorch>(n.id, TchTensor::new(dx.reshape(x.tensor.size())));
            }
        }
    }

    pub(super) fn layer_norm<const D: usize>(
        x: Tensor<D>,
        gamma: Tensor<1>,
        beta: Tensor<1>,
        eps: f64,
    ) -> Result<Tensor<D>, Tensor<D>> {
        match (handle(&x), handle(&gamma), handle(&beta)) {
            (Some(Handle::Tracked(x)), Some(Handle::Tracked(g)), Some(Handle::Tracked(b))) => {
                let h = *x
                    .primitive()
                    .tensor
                    .size()
                    .last()
                    .expect("layer norm of a scalar");
                let (y, mean, rstd) = x.primitive().tensor.native_layer_norm(
                    [h],
                    Some(&g.primitive().tensor),
                    Some(&b.primitive().tensor),
                    eps,
                );
                let out = TchTensor::new(y);
                let t = match LayerNormOp
                    .prepare::<NoCheckpointing>([x.node(), g.node(), b.node()])
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => {
                        let state = (
                            x.primitive().clone(),
                            g.primitive().clone(),
                            TchTensor::new(mean),
                            TchTensor::new(rstd),
                        );
                        prep.finish(state, out)
                    }
                    OpsKind::UnTracked(prep) => prep.finish(out),
                };
                Ok(tracked(t))
            }
            (Some(Handle::Plain(x)), Some(Handle::Plain(g)), Some(Handle::Plain(b))) => {
                let h = *x.tensor.size().last().expect("layer norm of a scalar");
                Ok(plain(x.tensor.layer_norm(
                    [h],
                    Some(&g.tensor),
                    Some(&b.tensor),
                    eps,
                    true,
                )))
            }
            _ => Err(x),
        }
    }

    /// Records `op` as one autodiff node over `a` with the forward result `out`; `state` builds
    /// what the backward keeps (from `out`), only where a gradient is wanted.
    fn record_unary<O>(
        op: O,
        a: &AdTensor,
        out: TchTensor,
        state: impl FnOnce(&TchTensor) -> TchTensor,
    ) -> AdTensor
    where
        O: Backward<LibTorch, 1, State = TchTensor>,
    {
        match op
            .prepare::<NoCheckpointing>([a.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let kept = state(&out);
                prep.finish(kept, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    // --------------------------------------------------------------------------- tanh GELU

    #[derive(Debug)]
    struct GeluTanhOp;

    impl Backward<LibTorch, 1> for GeluTanhOp {
        /// The input.
        type State = TchTensor;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let x = ops.state;
            unary::<LibTorch, _>(ops.parents, ops.node, grads, |g| {
                TchTensor::new(x.tensor.gelu_backward(&g.tensor, "tanh"))
            });
        }
    }

    pub(super) fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
        match handle(&x) {
            Some(Handle::Tracked(a)) => {
                let out = TchTensor::new(a.primitive().tensor.gelu("tanh"));
                Ok(tracked(record_unary(GeluTanhOp, &a, out, |_| {
                    a.primitive().clone()
                })))
            }
            Some(Handle::Plain(p)) => Ok(plain(p.tensor.gelu("tanh"))),
            None => Err(x),
        }
    }

    // ----------------------------------------------------------------------------- softmax

    #[derive(Debug)]
    struct SoftmaxOp;

    impl Backward<LibTorch, 1> for SoftmaxOp {
        /// The output.
        type State = TchTensor;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let y = ops.state;
            unary::<LibTorch, _>(ops.parents, ops.node, grads, |g| {
                TchTensor::new(tch::Tensor::internal_softmax_backward_data(
                    &g.tensor,
                    &y.tensor,
                    -1,
                    Kind::Float,
                ))
            });
        }
    }

    pub(super) fn softmax_last<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
        match handle(&x) {
            Some(Handle::Tracked(a)) => {
                // The saved output shares its storage handle with the returned tensor, so
                // burn never overwrites it in place while the backward still needs it.
                let out = TchTensor::new(a.primitive().tensor.softmax(-1, Kind::Float));
                Ok(tracked(record_unary(SoftmaxOp, &a, out, |y| y.clone())))
            }
            Some(Handle::Plain(p)) => Ok(plain(p.tensor.softmax(-1, Kind::Float))),
            None => Err(x),
        }
    }
}

#[cfg(all(test, feature = "tch"))]
mod tests {
    //! The fused libtorch path against burn's composed ops on flex: values and gradients of
    //! each op, on autodiff devices, and the inference path's values.

    use super::*;
    use burn::nn::{DropoutConfig, LayerNormConfig};
    use burn::tensor::{Device, TensorData};

    #[allow(deprecated)] // burn marks its libtorch device deprecated; the crate uses it.
    /// libtorch's CPU generator is one per process: tests that seed and draw it take turns.
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn devices() -> (Device, Device) {
        (Device::libtorch(), Device::flex())
    }

    /// Deterministic values in about [-3, 3], different for each `salt`.
    fn data(n: usize, salt: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let h = (i.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)) % 10_007;
                h as f32 / 10_007.0 * 6.0 - 3.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0.0f32, f32::max);
        assert!(
            worst < tol,
            "{what}: worst relative difference {worst} ≥ {tol}"
        );
    }

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }

    /// `f(x)·w` summed, differentiated on both devices: (values, input gradients) of each.
    fn both<const D: usize>(
        shape: [usize; D],
        f: impl Fn(Tensor<D>) -> Tensor<D>,
    ) -> [(Vec<f32>, Vec<f32>); 2] {
        let n: usize = shape.iter().product();
        let (tch, flex) = devices();
        [tch, flex].map(|dev| {
            let dev = dev.autodiff();
            let x = Tensor::<D>::from_data(TensorData::new(data(n, 1), shape), &dev).require_grad();
            let w = Tensor::<D>::from_data(TensorData::new(data(n, 2), shape), &dev);
            let y = f(x.clone());
            let g = (y.clone() * w).sum().backward();
            let gx = x.grad(&g).expect("a gradient for x");
            (
                vals(y),
                gx.into_data().convert::<f32>().to_vec::<f32>().unwrap(),
            )
        })
    }

    #[test]
    fn gelu_tanh_matches_the_composed_formula() {
        let [(y, g), (y0, g0)] = both([4, 7, 33], gelu_tanh);
        close(&y, &y0, 1e-6, "gelu values");
        close(&g, &g0, 1e-5, "gelu gradients");
    }

    #[test]
    fn softmax_matches_the_composed_formula() {
        let [(y, g), (y0, g0)] = both([2, 3, 5, 17], softmax_last);
        close(&y, &y0, 1e-6, "softmax values");
        close(&g, &g0, 1e-5, "softmax gradients");
    }

    #[test]
    fn layer_norm_matches_burns_and_its_parameter_gradients_too() {
        let (tch, flex) = devices();
        let (b, h) = (6, 48);
        let run = |dev: &Device| {
            let dev = dev.clone().autodiff();
            let mut ln = LayerNormConfig::new(h).with_epsilon(1e-12).init(&dev);
            ln.gamma = ln.gamma.map(|_| {
                Tensor::<1>::from_data(TensorData::new(data(h, 3), [h]), &dev).require_grad()
            });
            let x = Tensor::<2>::from_data(TensorData::new(data(b * h, 4), [b, h]), &dev)
                .require_grad();
            let w = Tensor::<2>::from_data(TensorData::new(data(b * h, 5), [b, h]), &dev);
            let y = layer_norm(&ln, x.clone(), 1e-12);
            let g = (y.clone() * w).sum().backward();
            let beta = ln.beta.as_ref().unwrap().val();
            [
                vals(y),
                vals(x.grad(&g).unwrap()),
                vals(ln.gamma.val().grad(&g).unwrap()),
                vals(beta.grad(&g).unwrap()),
            ]
        };
        let (ours, theirs) = (run(&tch), run(&flex));
        for (what, (a, b)) in ["values", "dx", "dgamma", "dbeta"]
            .iter()
            .zip(ours.iter().zip(&theirs))
        {
            close(a, b, 2e-5, what);
        }
    }

    /// `layer_norm(dense(x))` on a `[B, L, in]` input with L a multiple of 32 (where burn keeps
    /// a batched product) against burn's `ln.forward(linear.forward(x))` on flex: values and
    /// the gradients of the input, the weight and the bias.
    #[test]
    fn dense_and_a_3d_layer_norm_match_burns_composition() {
        use burn::nn::LinearConfig;
        let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner()); // Linear's init draws
        let (tch, flex) = devices();
        let (b, l, d_in, d_out) = (3, 32, 24, 40);
        let run = |dev: &Device, ours: bool| {
            let dev = dev.clone().autodiff();
            let mut lin = LinearConfig::new(d_in, d_out).init(&dev);
            lin.weight = lin.weight.map(|_| {
                Tensor::<2>::from_data(TensorData::new(data(d_in * d_out, 9), [d_in, d_out]), &dev)
                    .mul_scalar(0.2)
                    .require_grad()
            });
            lin.bias = lin.bias.map(|p| {
                p.map(|_| {
                    Tensor::<1>::from_data(TensorData::new(data(d_out, 10), [d_out]), &dev)
                        .require_grad()
                })
            });
            let ln = LayerNormConfig::new(d_out).with_epsilon(1e-12).init(&dev);
            let n = b * l * d_in;
            let x = Tensor::<3>::from_data(TensorData::new(data(n, 11), [b, l, d_in]), &dev)
                .require_grad();
            let w = Tensor::<3>::from_data(
                TensorData::new(data(b * l * d_out, 12), [b, l, d_out]),
                &dev,
            );
            let y = if ours {
                layer_norm(&ln, dense(&lin, x.clone()), 1e-12)
            } else {
                ln.forward(lin.forward(x.clone()))
            };
            let g = (y.clone() * w).sum().backward();
            let bias = lin.bias.as_ref().unwrap().val();
            [
                vals(y),
                vals(x.grad(&g).unwrap()),
                vals(lin.weight.val().grad(&g).unwrap()),
                vals(bias.grad(&g).unwrap()),
            ]
        };
        let (ours, theirs) = (run(&tch, true), run(&flex, false));
        for (what, (a, b)) in ["values", "dx", "dweight", "dbias"]
            .iter()
            .zip(ours.iter().zip(&theirs))
        {
            close(a, b, 2e-5, what);
        }
    }

    #[test]
    fn inference_path_gives_the_same_values() {
        let (tch, flex) = devices();
        let shape = [3, 5, 40];
        let n = 3 * 5 * 40;
        let run = |dev: &Device| {
            let x = Tensor::<3>::from_data(TensorData::new(data(n, 6), shape), dev);
            let ln = LayerNormConfig::new(40).init(dev);
            [
                vals(gelu_tanh(x.clone())),
                vals(softmax_last(x.clone())),
                vals(layer_norm(&ln, x, 1e-5)),
            ]
        };
        for (a, b) in run(&tch).iter().zip(&run(&flex)) {
            close(a, b, 2e-6, "inference values");
        }
    }

    #[test]
    fn dropout_keeps_the_right_share_scales_and_is_reproducible_from_the_seed() {
        let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        let (tch, _) = devices();
        let dev = tch.clone().autodiff();
        let d = DropoutConfig::new(0.3).init();
        let shape = [64, 1000];
        let n = 64_000;
        let run = |seed: u64| {
            dev.seed(seed);
            let x = Tensor::<2>::from_data(TensorData::new(data(n, 7), shape), &dev).require_grad();
            let w = Tensor::<2>::from_data(TensorData::new(data(n, 8), shape), &dev);
            let y = dropout(&d, x.clone());
            let g = (y.clone() * w).sum().backward();
            (vals(y), vals(x.grad(&g).unwrap()))
        };
        let (y, g) = run(11);
        let (xs, ws) = (data(n, 7), data(n, 8));
        let mut kept = 0;
        for i in 0..n {
            if y[i] == 0.0 && xs[i] != 0.0 {
                assert_eq!(g[i], 0.0, "a dropped element passes no gradient");
            } else {
                kept += 1;
                assert!(
                    (y[i] - xs[i] / 0.7).abs() <= 1e-6 * (1.0 + y[i].abs()),
                    "kept: x / keep"
                );
                assert!(
                    (g[i] - ws[i] / 0.7).abs() <= 1e-6 * (1.0 + g[i].abs()),
                    "its gradient: w / keep"
                );
            }
        }
        let share = kept as f64 / n as f64;
        assert!(
            (share - 0.7).abs() < 0.01,
            "kept share {share}, expected 0.7"
        );
        assert_eq!(run(11), (y.clone(), g), "the same seed gives the same mask");
        assert_ne!(run(12).0, y, "another seed gives another mask");
        // A no-op without autodiff (inference).
        let x = Tensor::<2>::ones(shape, &tch);
        assert_eq!(vals(dropout(&d, x.clone())), vals(x));
    }

    /// The share of positions where two masks are both kept, of those kept in the first.
    fn both_kept(a: &[f32], b: &[f32]) -> f64 {
        let kept_a = a.iter().filter(|&&v| v > 0.0).count();
        let both = a
            .iter()
            .zip(b)
            .filter(|(x, y)| **x > 0.0 && **y > 0.0)
            .count();
        both as f64 / kept_a as f64
    }

    #[test]
    fn dropout_masks_are_independent_across_calls_keys_and_neighbours() {
        // Masks drawn one after another (the layers of a step), as training draws them: each
        // kept element of one is kept in the next with probability `keep`, not more.
        let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        let (tch, _) = devices();
        let dev = tch.clone().autodiff();
        let d = DropoutConfig::new(0.1).init();
        dev.seed(3);
        let shape = [128, 1000];
        let masks: Vec<Vec<f32>> = (0..4)
            .map(|_| {
                let x = Tensor::<2>::ones(shape, &dev).require_grad();
                vals(dropout(&d, x))
            })
            .collect();
        for w in masks.windows(2) {
            let p = both_kept(&w[0], &w[1]);
            assert!(
                (p - 0.9).abs() < 0.005,
                "consecutive masks: P(kept | kept) = {p}"
            );
            assert_ne!(w[0], w[1]);
        }
        // Neighbouring elements of one mask, and the masks of adjacent keys, are independent
        // (the counter is mixed by splitmix64, not used raw), also at a low keep rate.
        let n = 1 << 18;
        let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
        mask_values(1000, 0.5, &mut a);
        mask_values(1001, 0.5, &mut b);
        let p = both_kept(&a, &b);
        assert!(
            (p - 0.5).abs() < 0.01,
            "adjacent keys: P(kept | kept) = {p}"
        );
        let p = both_kept(&a[..n - 1], &a[1..]);
        assert!((p - 0.5).abs() < 0.01, "neighbours: P(kept | kept) = {p}");
        // Rows of a [.., 128] attention mask: element j and j + 128 (the next query's row).
        let p = both_kept(&a[..n - 128], &a[128..]);
        assert!((p - 0.5).abs() < 0.01, "next row: P(kept | kept) = {p}");
    }

    #[test]
    fn mask_values_do_not_depend_on_the_length_filled() {
        let mut long = vec![0f32; 300_000];
        let mut short = vec![0f32; 70_001];
        mask_values(5, 0.9, &mut long);
        mask_values(5, 0.9, &mut short);
        assert_eq!(&long[..70_001], &short[..]);
        let kept = long.iter().filter(|&&v| v > 0.0).count() as f64 / long.len() as f64;
        assert!((kept - 0.9).abs() < 0.005, "kept share {kept}");
        assert!(long.iter().all(|&v| v == 0.0 || v == (1.0 / 0.9) as f32));
    }
}
