//! Fused operations with hand-written backward passes, for the encoder's hot spots on libtorch.
//!
//! burn 0.22's autodiff has no backward of its own for layer norm, softmax or the tanh GELU:
//! it records each as the elementwise and reduction ops it is made of (about ten for a layer
//! norm, six for a tanh GELU) and runs each one's backward, over every token of every layer.
//! Here each is one recorded op: the forward is libtorch's fused kernel (`native_layer_norm`,
//! `softmax`, `gelu(approximate = "tanh")`) and the backward is libtorch's fused backward
//! (`_softmax_backward_data`, `gelu_backward`) or, for layer norm, whose backward kernel tch
//! does not expose, the closed form on the saved mean and reciprocal standard deviation (on
//! the CPU one pass per row: [`super::kernels`]).
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
//! rows of a `[B, L, in]` input as one matrix product. [`attention`] (BERT's attention core) is
//! one recorded op whose arithmetic is the composed ops', operation for operation, but keeps no
//! dropout mask (its backward recomputes it from the key). Under [`with_matmul_precision`]`(Bf16)`
//! [`dense`], [`matmul`] and [`attention`] take bf16 operands (autocast-style; the weights stay
//! f32).
//!
//! What this changes in training (RESULTS.md, "CPU training speed"): the fused ops and
//! [`dense`] round differently from burn's composed ops (a training run with burn's dropout
//! masks follows the composed ops' losses within 3e-7 over 208 steps); the dropout masks are
//! another random stream than burn's, so a run's figures are those of another seed.

use burn::nn::{Dropout, LayerNorm, Linear};
use burn::tensor::activation::{gelu_approximate, softmax as burn_softmax};
use burn::tensor::{Distribution, Tensor};

/// How the fused ops multiply matrices: the products of [`dense`], [`matmul`] and
/// [`attention`] (every large product of FashionBERT's training step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    /// f32 operands and results.
    #[default]
    F32,
    /// bf16 operands (f32 accumulation inside the kernel), the product rounded to bf16 and
    /// widened back to f32, as PyTorch's CPU autocast does for its matrix products; weights,
    /// gradients, optimiser state and every other op stay f32. libtorch only (elsewhere the
    /// products stay f32); fast on CPUs with AVX-512 BF16 or AMX.
    Bf16,
}

thread_local! {
    static PRECISION: std::cell::Cell<MatmulPrecision> =
        const { std::cell::Cell::new(MatmulPrecision::F32) };
}

/// Runs `f` with the fused ops' matrix products in precision `p` on this thread (an
/// autocast scope): what `f` records keeps its precision in its backward pass too.
pub fn with_matmul_precision<R>(p: MatmulPrecision, f: impl FnOnce() -> R) -> R {
    struct Restore(MatmulPrecision);
    impl Drop for Restore {
        fn drop(&mut self) {
            PRECISION.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(PRECISION.with(|c| c.replace(p)));
    f()
}

/// The matrix-product precision in force on this thread (see [`with_matmul_precision`]).
pub fn matmul_precision() -> MatmulPrecision {
    PRECISION.with(|c| c.get())
}

fn bf16() -> bool {
    matmul_precision() == MatmulPrecision::Bf16
}

/// `l` over the last dimension of `x` as one `[rows, in] × [in, out]` product.
///
/// burn keeps `[B, L, in] × [in, out]` batched when `L` is a multiple of 32 (a tiling rule for
/// its GPU kernels), and libtorch runs that as B small products that each pack the weight again
/// (about 5 % of a CPU training step in packing and output scaling, RESULTS.md); folding the
/// rows first gives the one product a PyTorch `nn.Linear` runs. Under bf16
/// ([`with_matmul_precision`]) the product, and those of its backward, take bf16 operands.
pub fn dense<const D: usize>(l: &Linear, x: Tensor<D>) -> Tensor<D> {
    if D < 2 || (D == 2 && !bf16()) {
        return l.forward(x);
    }
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let x = x.reshape([rows, d_in]);
    let y = if bf16() {
        // The weight, then the bias, read as `Linear::forward` reads them (burn initialises a
        // parameter lazily, from the random stream, on its first read).
        let y = matmul(x, l.weight.val());
        match &l.bias {
            Some(b) => y + b.val().unsqueeze(),
            None => y,
        }
    } else {
        l.forward(x)
    };
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

/// `a · b`, in the matrix-product precision in force (see [`with_matmul_precision`]).
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "tch")]
    let (a, b) = match bf16() {
        true => match tch_impl::matmul_bf16(a, b) {
            Ok(y) => return y,
            Err(ab) => ab,
        },
        false => (a, b),
    };
    a.matmul(b)
}

/// The keep probability of `d` applied to `x` now: `Some(1 − prob)` in training on an autodiff
/// device with `prob > 0`, else `None` (dropout is the identity).
fn dropout_keep<const D: usize>(d: &Dropout, x: &Tensor<D>) -> Option<f64> {
    (d.training.is_enabled() && x.device().is_autodiff() && d.prob != 0.0).then(|| 1.0 - d.prob)
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
    let Some(keep) = dropout_keep(d, &x) else {
        return x;
    };
    #[cfg(feature = "tch")]
    if let Some(mask) = tch_impl::cpu_dropout_mask(&x, keep) {
        return x * mask;
    }
    let mask = x.random_like(Distribution::Bernoulli(keep));
    x * (mask * (1.0 / keep))
}

/// BERT's attention core, `dropout(softmax(q · kᵀ / sqrt(dh) + bias)) · v`, for `q`, `k`, `v`
/// of shape `[B, heads, L, dh]` and an additive `bias` that broadcasts to `[B, heads, L, L]`
/// (the padding mask: a constant, it gets no gradient). The dropout is `d`'s, as [`dropout`].
///
/// On libtorch CPU under autodiff this is one recorded op: the scale and the bias are applied
/// in place on the scores, the dropout mask (the same values [`dropout`] would draw at this
/// point of the random stream) is applied while copying the probabilities, and the backward
/// recomputes the mask from its key instead of keeping it; the composed ops keep a mask, the
/// probabilities and their product, and run six nodes' backward over `[B, heads, L, L]`. The
/// arithmetic is the composed ops' own, operation for operation.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Tensor<4>,
    d: &Dropout,
) -> Tensor<4> {
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    let keep = dropout_keep(d, &q);
    #[cfg(feature = "tch")]
    let (q, k, v, bias) = match tch_impl::attention(q, k, v, bias, scale, keep) {
        Ok(ctx) => return ctx,
        Err(inputs) => inputs,
    };
    let scores = q.matmul(k.swap_dims(2, 3)) * scale + bias.detach();
    dropout(d, softmax_last(scores)).matmul(v)
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
    use burn_autodiff::ops::{Backward, NodeGuard, Ops, OpsKind, unary};
    use burn_backend::BackendTypes;
    use burn_tch::{LibTorch, TchTensor};
    use tch::Kind;

    use crate::models::kernels;

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
        let key = mask_key();
        // Filled in place: no zeroed buffer of its own and no copy into libtorch.
        let mut mask = tch::Tensor::empty(t.size(), (Kind::Float, tch::Device::Cpu));
        kernels::mask_values(key, keep, f32_slice_mut(&mut mask));
        Some(plain(mask))
    }

    /// A dropout mask's key: one draw from libtorch's CPU generator (which `Device::seed` seeds).
    fn mask_key() -> u64 {
        tch::Tensor::randint(i64::MAX, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0])
            as u64
    }

    /// The elements of a contiguous f32 CPU tensor.
    fn f32_slice(t: &tch::Tensor) -> &[f32] {
        assert!(
            t.kind() == Kind::Float && t.device() == tch::Device::Cpu && t.is_contiguous(),
            "a contiguous f32 CPU tensor"
        );
        // SAFETY: checked above: numel() f32 values in one block, alive as long as `t`.
        unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel()) }
    }

    /// The elements of a contiguous f32 CPU tensor, to write; the caller holds the only handle
    /// to its storage (a tensor it just made).
    fn f32_slice_mut(t: &mut tch::Tensor) -> &mut [f32] {
        assert!(
            t.kind() == Kind::Float && t.device() == tch::Device::Cpu && t.is_contiguous(),
            "a contiguous f32 CPU tensor"
        );
        // SAFETY: as `f32_slice`; `&mut` and the caller's ownership make the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, t.numel()) }
    }

    const BF16: Kind = Kind::BFloat16;

    /// `a · b` in the precision of the operands kept from the forward: where either is bf16,
    /// the other is rounded to bf16 and the product widened back to f32.
    fn mm_as(a: &tch::Tensor, b: &tch::Tensor) -> tch::Tensor {
        mm_in(a.kind() == BF16 || b.kind() == BF16, a, b)
    }

    /// `a · b`, with bf16 operands (the product widened back to f32) where `bf16`.
    fn mm_in(bf16: bool, a: &tch::Tensor, b: &tch::Tensor) -> tch::Tensor {
        if bf16 {
            a.to_kind(BF16)
                .matmul(&b.to_kind(BF16))
                .to_kind(Kind::Float)
        } else {
            a.matmul(b)
        }
    }

    // ------------------------------------------------------------------------- bf16 products

    /// A matrix product with bf16 operands.
    #[derive(Debug)]
    struct MatmulBf16Op;

    impl Backward<LibTorch, 2> for MatmulBf16Op {
        /// The two bf16 operands.
        type State = (TchTensor, TchTensor);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (a, b) = ops.state;
            let [pa, pb] = ops.parents;
            let gb = grads.consume::<LibTorch>(&ops.node).tensor.to_kind(BF16);
            if let Some(n) = pa {
                let da = mm_as(&gb, &b.tensor.transpose(0, 1));
                grads.register::<LibTorch>(n.id, TchTensor::new(da));
            }
            if let Some(n) = pb {
                let db = mm_as(&a.tensor.transpose(0, 1), &gb);
                grads.register::<LibTorch>(n.id, TchTensor::new(db));
            }
        }
    }

    /// [`super::matmul`] with bf16 operands, where both are tracked f32 libtorch tensors.
    pub(super) fn matmul_bf16(
        a: Tensor<2>,
        b: Tensor<2>,
    ) -> Result<Tensor<2>, (Tensor<2>, Tensor<2>)> {
        let (Some(Handle::Tracked(aa)), Some(Handle::Tracked(ba))) = (handle(&a), handle(&b))
        else {
            return Err((a, b));
        };
        let (ab, bb) = (
            aa.primitive().tensor.to_kind(BF16),
            ba.primitive().tensor.to_kind(BF16),
        );
        let out = TchTensor::new(ab.mm(&bb).to_kind(Kind::Float));
        let parents = [aa.node(), ba.node()];
        Ok(tracked(record(MatmulBf16Op, parents, out, |_| {
            (TchTensor::new(ab), TchTensor::new(bb))
        })))
    }

    // ------------------------------------------------------------------------ attention core

    #[derive(Debug)]
    struct AttentionOp;

    /// What the attention backward keeps: the inputs, the softmax output, what was multiplied
    /// with `v` (the probabilities after dropout; absent without dropout) and the mask's key.
    #[derive(Debug, Clone)]
    struct AttentionState {
        q: TchTensor,
        k: TchTensor,
        v: TchTensor,
        probs: TchTensor,
        attended: Option<TchTensor>,
        mask: Option<(u64, f64)>,
        scale: f64,
    }

    impl Backward<LibTorch, 3> for AttentionOp {
        type State = AttentionState;

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let s = ops.state;
            let g = grads.consume::<LibTorch>(&ops.node).tensor;
            let [pq, pk, pv] = ops.parents;
            let (ds, dv) = attention_backward(
                &g,
                &s.v.tensor,
                &s.probs.tensor,
                s.attended.as_ref().map(|t| &t.tensor),
                s.mask,
                s.scale,
                pv.is_some(),
                pq.is_some() || pk.is_some(),
            );
            if let (Some(n), Some(dv)) = (pv, dv) {
                grads.register::<LibTorch>(n.id, TchTensor::new(dv));
            }
            if let (Some(n), Some(ds)) = (pq, &ds) {
                grads.register::<LibTorch>(n.id, TchTensor::new(mm_as(ds, &s.k.tensor)));
            }
            if let (Some(n), Some(ds)) = (pk, &ds) {
                // The gradient of kᵀ, transposed back (as burn's matmul and swap_dims would).
                let dk = mm_as(&s.q.tensor.transpose(-2, -1), ds).transpose(-2, -1);
                grads.register::<LibTorch>(n.id, TchTensor::new(dk));
            }
        }
    }

    /// Scores → context on libtorch tensors: `(probs, attended, mask, ctx)` for q, k, v of
    /// shape `[B, heads, L, dh]` — the composed ops' arithmetic (see [`super::attention`]).
    fn attention_forward(
        q: &tch::Tensor,
        k: &tch::Tensor,
        v: &tch::Tensor,
        bias: &tch::Tensor,
        scale: f64,
        keep: Option<f64>,
    ) -> (
        tch::Tensor,
        Option<tch::Tensor>,
        Option<(u64, f64)>,
        tch::Tensor,
    ) {
        // q, k and v in bf16 (under bf16 products) make both products bf16 ones.
        let mut scores = mm_as(q, &k.transpose(-2, -1));
        let _ = scores.f_mul_scalar_(scale).expect("scaling the scores");
        let _ = scores.f_add_(bias).expect("adding the mask bias");
        let probs = scores.softmax(-1, Kind::Float);
        drop(scores);
        let (attended, mask) = match keep {
            Some(keep) => {
                let key = mask_key();
                let probs = probs.contiguous();
                let mut out = tch::Tensor::empty(probs.size(), (Kind::Float, tch::Device::Cpu));
                kernels::mask_mul(key, keep, f32_slice(&probs), f32_slice_mut(&mut out));
                (Some(out), Some((key, keep)))
            }
            None => (None, None),
        };
        let ctx = mm_as(attended.as_ref().unwrap_or(&probs), v);
        (probs, attended, mask, ctx)
    }

    /// The score gradient (`∂/∂scores`, scaled: what multiplies k and q) and the value
    /// gradient from the context gradient `g`.
    fn attention_backward(
        g: &tch::Tensor,
        v: &tch::Tensor,
        probs: &tch::Tensor,
        attended: Option<&tch::Tensor>,
        mask: Option<(u64, f64)>,
        scale: f64,
        want_v: bool,
        want_scores: bool,
    ) -> (Option<tch::Tensor>, Option<tch::Tensor>) {
        let attended = attended.unwrap_or(probs);
        let bf16 = v.kind() == BF16;
        let dv = want_v.then(|| mm_in(bf16, &attended.transpose(-2, -1), g));
        if !want_scores {
            return (None, dv);
        }
        let mut dp = mm_as(g, &v.transpose(-2, -1)).contiguous();
        if let Some((key, keep)) = mask {
            kernels::mask_mul_in_place(key, keep, f32_slice_mut(&mut dp));
        }
        let mut ds = tch::Tensor::internal_softmax_backward_data(&dp, probs, -1, Kind::Float);
        drop(dp);
        let _ = ds.f_mul_scalar_(scale).expect("scaling the score gradient");
        (Some(ds), dv)
    }

    type AttentionInputs = (Tensor<4>, Tensor<4>, Tensor<4>, Tensor<4>);

    /// The attention core as one op, where `q`, `k`, `v` are tracked f32 libtorch tensors (on
    /// the CPU where there is dropout); `Err` gives the inputs back.
    pub(super) fn attention(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Tensor<4>,
        scale: f64,
        keep: Option<f64>,
    ) -> Result<Tensor<4>, AttentionInputs> {
        let bias_t = match handle(&bias) {
            Some(Handle::Tracked(a)) => a.primitive().tensor.shallow_clone(),
            Some(Handle::Plain(p)) => p.tensor.shallow_clone(),
            None => return Err((q, k, v, bias)),
        };
        let (qa, ka, va) = match (handle(&q), handle(&k), handle(&v)) {
            (Some(Handle::Tracked(q)), Some(Handle::Tracked(k)), Some(Handle::Tracked(v))) => {
                (q, k, v)
            }
            _ => return Err((q, k, v, bias)),
        };
        let qt = &qa.primitive().tensor;
        if keep.is_some() && qt.device() != tch::Device::Cpu {
            return Err((q, k, v, bias));
        }
        // Under bf16 products the op keeps (and multiplies) bf16 copies of q, k and v.
        let (q_, k_, v_) = match super::bf16() {
            true => (
                TchTensor::new(qt.to_kind(BF16)),
                TchTensor::new(ka.primitive().tensor.to_kind(BF16)),
                TchTensor::new(va.primitive().tensor.to_kind(BF16)),
            ),
            false => (
                qa.primitive().clone(),
                ka.primitive().clone(),
                va.primitive().clone(),
            ),
        };
        let (probs, attended, mask, ctx) =
            attention_forward(&q_.tensor, &k_.tensor, &v_.tensor, &bias_t, scale, keep);
        let parents = [qa.node(), ka.node(), va.node()];
        Ok(tracked(record(
            AttentionOp,
            parents,
            TchTensor::new(ctx),
            |_| AttentionState {
                q: q_,
                k: k_,
                v: v_,
                probs: TchTensor::new(probs),
                attended: attended.map(TchTensor::new),
                mask,
                scale,
            },
        )))
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
            if x.tensor.device() == tch::Device::Cpu {
                // One pass over each row on every core instead of ten libtorch passes.
                let (x2, g2) = (x.tensor.contiguous(), g.tensor.contiguous());
                let gamma = gamma.tensor.contiguous();
                let (mean, rstd) = (mean.tensor.contiguous(), rstd.tensor.contiguous());
                let mut dx = tch::Tensor::empty(x2.size(), (Kind::Float, tch::Device::Cpu));
                let mut dg = tch::Tensor::empty([h], (Kind::Float, tch::Device::Cpu));
                let mut db = tch::Tensor::empty([h], (Kind::Float, tch::Device::Cpu));
                kernels::layer_norm_backward(
                    kernels::LayerNormSaved {
                        x: f32_slice(&x2),
                        gamma: f32_slice(&gamma),
                        mean: f32_slice(&mean),
                        rstd: f32_slice(&rstd),
                    },
                    f32_slice(&g2),
                    f32_slice_mut(&mut dx),
                    f32_slice_mut(&mut dg),
                    f32_slice_mut(&mut db),
                );
                for (parent, grad) in [(px, dx), (pg, dg), (pb, db)] {
                    if let Some(n) = parent {
                        grads.register::<LibTorch>(n.id, TchTensor::new(grad));
                    }
                }
                return;
            }
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
                let parents = [x.node(), g.node(), b.node()];
                Ok(tracked(record(LayerNormOp, parents, out, |_| {
                    (
                        x.primitive().clone(),
                        g.primitive().clone(),
                        TchTensor::new(mean),
                        TchTensor::new(rstd),
                    )
                })))
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

    /// Records `op` as one autodiff node over `parents` with the forward result `out`; `state`
    /// builds what the backward keeps (it may read `out`), only where a gradient is wanted.
    fn record<O, const N: usize>(
        op: O,
        parents: [NodeGuard; N],
        out: TchTensor,
        state: impl FnOnce(&TchTensor) -> O::State,
    ) -> AdTensor
    where
        O: Backward<LibTorch, N>,
    {
        match op
            .prepare::<NoCheckpointing>(parents)
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
                Ok(tracked(record(GeluTanhOp, [a.node()], out, |_| {
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
                Ok(tracked(record(SoftmaxOp, [a.node()], out, |y| y.clone())))
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
    use crate::models::kernels::mask_values;
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

    /// The attention op against the ops it replaces: on libtorch bit for bit (values and the
    /// gradients of q, k and v, with dropout from the same seed and without), and against
    /// flex's composed ops to rounding.
    #[test]
    fn attention_is_the_composed_ops_bit_for_bit() {
        let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        let (tch, flex) = devices();
        let shape = [2, 3, 32, 8];
        let n: usize = shape.iter().product();
        let run = |dev: &Device, ours: bool, prob: f64| {
            let dev = dev.clone().autodiff();
            dev.seed(5);
            let d = DropoutConfig::new(prob).init();
            let input = |salt| {
                Tensor::<4>::from_data(TensorData::new(data(n, salt), shape), &dev)
                    .mul_scalar(0.5)
                    .require_grad()
            };
            let (q, k, v) = (input(20), input(21), input(22));
            // The second record's last five keys are padding.
            let pad: Vec<f32> = (0..64)
                .map(|i| if i >= 59 { -10000.0 } else { 0.0 })
                .collect();
            let bias = Tensor::<4>::from_data(TensorData::new(pad, [2, 1, 1, 32]), &dev);
            let w = Tensor::<4>::from_data(TensorData::new(data(n, 23), shape), &dev);
            let y = if ours {
                attention(q.clone(), k.clone(), v.clone(), bias, &d)
            } else {
                let scores =
                    q.clone().matmul(k.clone().swap_dims(2, 3)) * (1.0 / 8f64.sqrt()) + bias;
                dropout(&d, softmax_last(scores)).matmul(v.clone())
            };
            let g = (y.clone() * w).sum().backward();
            [
                vals(y),
                vals(q.grad(&g).unwrap()),
                vals(k.grad(&g).unwrap()),
                vals(v.grad(&g).unwrap()),
            ]
        };
        for prob in [0.0, 0.1] {
            let (ours, theirs) = (run(&tch, true, prob), run(&tch, false, prob));
            for (what, (a, b)) in ["values", "dq", "dk", "dv"]
                .iter()
                .zip(ours.iter().zip(&theirs))
            {
                assert!(
                    a == b,
                    "{what} differ from the composed ops' (dropout {prob})"
                );
            }
        }
        let (ours, theirs) = (run(&tch, true, 0.0), run(&flex, false, 0.0));
        for (what, (a, b)) in ["values", "dq", "dk", "dv"]
            .iter()
            .zip(ours.iter().zip(&theirs))
        {
            close(a, b, 2e-5, what);
        }
        // Dropout drops: some probabilities are zeroed, so the values move.
        assert_ne!(run(&tch, true, 0.1)[0], ours[0]);
    }

    /// ‖a − b‖ / ‖b‖.
    fn rel_norm(a: &[f32], b: &[f32]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        (d / n).sqrt()
    }

    /// Under bf16, `dense` (q, k, v and a feed-forward layer), `attention` and `matmul`
    /// (values, and the gradients of every input and parameter) follow their f32 results to bf16's precision (8 significant bits:
    /// relative error ~ 2⁻⁸ per rounding), and do round (they are not the f32 results); the
    /// precision is back to f32 after the scope.
    #[test]
    fn bf16_products_follow_the_f32_ones_to_bf16_precision() {
        use burn::nn::LinearConfig;
        let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        let (tch, _) = devices();
        let dev = tch.autodiff();
        let (b, l, h, heads) = (2, 32, 48, 4);
        let linear = |salt: u32, d_in: usize, d_out: usize| {
            let mut lin = LinearConfig::new(d_in, d_out).init(&dev);
            lin.weight = lin.weight.map(|_| {
                Tensor::<2>::from_data(
                    TensorData::new(data(d_in * d_out, salt), [d_in, d_out]),
                    &dev,
                )
                .mul_scalar(0.1)
                .require_grad()
            });
            lin.bias = lin.bias.map(|p| {
                p.map(|_| {
                    Tensor::<1>::from_data(TensorData::new(data(d_out, salt + 1), [d_out]), &dev)
                        .require_grad()
                })
            });
            lin
        };
        let (q, k, v, ffn) = (
            linear(40, h, h),
            linear(42, h, h),
            linear(44, h, h),
            linear(46, h, 3 * h),
        );
        let emb = Tensor::<2>::from_data(TensorData::new(data(100 * h, 48), [100, h]), &dev)
            .require_grad();
        let run = |p: MatmulPrecision| {
            let x = Tensor::<3>::from_data(TensorData::new(data(b * l * h, 50), [b, l, h]), &dev)
                .require_grad();
            let bias = Tensor::<4>::zeros([b, 1, 1, l], &dev);
            let d = DropoutConfig::new(0.0).init();
            let y = with_matmul_precision(p, || {
                let split = |t: Tensor<3>| t.reshape([b, l, heads, h / heads]).swap_dims(1, 2);
                let (qs, ks, vs) = (
                    split(dense(&q, x.clone())),
                    split(dense(&k, x.clone())),
                    split(dense(&v, x.clone())),
                );
                let a = attention(qs, ks, vs, bias, &d)
                    .swap_dims(1, 2)
                    .reshape([b, l, h]);
                let f = dense(&ffn, a);
                let rows = f.reshape([b * l * 3, h]);
                matmul(rows, emb.clone().transpose())
            });
            assert_eq!(
                matmul_precision(),
                MatmulPrecision::F32,
                "the scope restores f32"
            );
            let w = Tensor::<2>::from_data(
                TensorData::new(data(b * l * 3 * 100, 51), [b * l * 3, 100]),
                &dev,
            );
            let g = (y.clone() * w).sum().backward();
            let mut out = vec![
                vals(y),
                vals(x.grad(&g).unwrap()),
                vals(emb.grad(&g).unwrap()),
            ];
            for lin in [&q, &k, &v, &ffn] {
                out.push(vals(lin.weight.val().grad(&g).unwrap()));
                out.push(vals(lin.bias.as_ref().unwrap().val().grad(&g).unwrap()));
            }
            out
        };
        let (half, full) = (run(MatmulPrecision::Bf16), run(MatmulPrecision::F32));
        let what = [
            "values", "dx", "demb", "dwq", "dbq", "dwk", "dbk", "dwv", "dbv", "dwffn", "dbffn",
        ];
        for (what, (a, b)) in what.iter().zip(half.iter().zip(&full)) {
            if *what == "dbk" {
                // A key bias adds the same q·b to every score of a row, which the softmax
                // cancels: its gradient is zero up to rounding (bf16's, under bf16).
                let scale = full[4].iter().map(|v| v.abs()).fold(0f32, f32::max);
                let worst = |v: &[f32]| v.iter().map(|x| x.abs()).fold(0f32, f32::max) / scale;
                assert!(worst(b) < 1e-4, "f32 dbk: {}", worst(b));
                assert!(worst(a) < 3e-2, "bf16 dbk: {}", worst(a));
                continue;
            }
            let e = rel_norm(a, b);
            assert!(e < 3e-2, "{what}: relative error {e} under bf16");
            assert!(e > 1e-5, "{what}: {e}: bf16 products should round");
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
