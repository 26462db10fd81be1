//! Adam in one pass over memory: the optimiser `train` and the bench use.
//!
//! burn's `Adam` makes about fourteen elementwise passes over each parameter per step (moments,
//! bias corrections, square root, division, scaling), most into fresh tensors; for the 24 M
//! parameters of a MiniLM-size FashionBERT that was a tenth of a CPU training step. On libtorch
//! CPU f32 tensors this one updates parameter and moments in one parallel pass, in place where
//! the storage is not shared (a copy first where it is); on a GPU it runs seven in-place libtorch
//! passes. Both use PyTorch's single-tensor Adam formulation:
//!
//! ```text
//! m ← m + (1 − β₁)(g − m)             v ← v + (1 − β₂)(g² − v)
//! p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! which is burn's update in another order of float operations (a training run follows burn's
//! Adam's losses within 3e-7 over 208 steps, RESULTS.md; the tests below compare the
//! parameters after a few steps). Elsewhere (flex) it is burn's `Adam`. The state is burn's
//! `AdamState`, so checkpoints (`optim.bpk`) are the same format.

use burn::optim::{Adam, AdamConfig, AdamState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

/// Adam (no weight decay, no AMSGrad) with the given betas and epsilon.
#[derive(Clone)]
pub struct FastAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    /// burn's Adam with the same settings, for tensors off libtorch.
    fallback: Adam,
}

impl FastAdam {
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32) -> FastAdam {
        let fallback = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .build();
        FastAdam {
            beta_1,
            beta_2,
            epsilon,
            fallback,
        }
    }

    /// The settings `train` uses (β₁ 0.9, β₂ 0.98, ε 1e-6), and the bench as it.
    pub fn for_training() -> FastAdam {
        FastAdam::new(0.9, 0.98, 1e-6)
    }

    /// The whole-module optimiser.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for FastAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        #[cfg(feature = "tch")]
        let (tensor, grad, state) = match tch_step(self, lr, tensor, grad, state) {
            Ok(done) => return done,
            Err(inputs) => inputs,
        };
        self.fallback.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: AdamState<D>, device: &Device) -> AdamState<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

#[cfg(feature = "tch")]
type Inputs<const D: usize> = (Tensor<D>, Tensor<D>, Option<AdamState<D>>);

/// The libtorch step; `Err` gives the inputs back where any of them is not an f32 libtorch
/// tensor (or the state is AMSGrad's).
#[cfg(feature = "tch")]
#[allow(deprecated)] // burn marks burn-tch deprecated; the crate uses it.
#[allow(clippy::type_complexity)]
fn tch_step<const D: usize>(
    o: &FastAdam,
    lr: LearningRate,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    state: Option<AdamState<D>>,
) -> Result<(Tensor<D>, Option<AdamState<D>>), Inputs<D>> {
    use burn::optim::AdaptiveMomentumState;
    use burn_tch::{LibTorch, TchTensor};
    use tch::Kind;

    let prim = |t: &Tensor<D>| {
        t.clone()
            .try_into_primitive::<LibTorch>()
            .ok()
            .filter(|p| p.tensor.kind() == Kind::Float)
    };
    let (Some(mut p), Some(mut g)) = (prim(&tensor), prim(&grad)) else {
        return Err((tensor, grad, state));
    };
    let moments = match &state {
        None => None,
        Some(s) if s.momentum.max_moment_2.is_some() => return Err((tensor, grad, state)),
        Some(s) => match (prim(&s.momentum.moment_1), prim(&s.momentum.moment_2)) {
            (Some(m), Some(v)) => Some((s.momentum.time, m, v)),
            _ => return Err((tensor, grad, state)),
        },
    };
    // The clones above hold the storages too: let them go, so that `can_mut` sees only ours.
    drop((tensor, grad, state));
    // Updates write into tensors this step owns: a fresh allocation of a large parameter's size
    // costs more than the arithmetic (the kernel zeroes its pages), so a copy only where shared.
    let own = |x: TchTensor| {
        if x.can_mut() {
            x
        } else {
            TchTensor::new(x.tensor.copy())
        }
    };
    let (b1, b2) = (o.beta_1 as f64, o.beta_2 as f64);
    if !g.tensor.is_contiguous() {
        g = TchTensor::new(g.tensor.contiguous());
    }
    let (time, m, v) = match moments {
        Some((t, m, v)) => (t + 1, own(m), own(v)),
        // Zero moments: the update's formulas then give (1 − β₁)·g and (1 − β₂)·g² exactly.
        None => (
            1,
            TchTensor::new(g.tensor.zeros_like()),
            TchTensor::new(g.tensor.zeros_like()),
        ),
    };
    let bc1 = 1.0 - b1.powi(time as i32);
    let bc2 = 1.0 - b2.powi(time as i32);
    let c = Coefficients {
        w1: 1.0 - b1,
        w2: 1.0 - b2,
        inv_sqrt_bc2: 1.0 / bc2.sqrt(),
        eps: o.epsilon as f64,
        neg_step: -bc1 / lr,
    };
    p = own(p);
    let n = p.tensor.numel();
    let cpu = [&p, &g, &m, &v].iter().all(|t| {
        t.tensor.device() == tch::Device::Cpu && t.tensor.is_contiguous() && t.tensor.numel() == n
    });
    if cpu {
        // SAFETY: p, m and v are contiguous f32 CPU tensors of n elements whose storages this
        // step alone holds (`own` copied any shared one); g is only read.
        let (ps, ms, vs, gs) = unsafe {
            (
                std::slice::from_raw_parts_mut(p.tensor.data_ptr() as *mut f32, n),
                std::slice::from_raw_parts_mut(m.tensor.data_ptr() as *mut f32, n),
                std::slice::from_raw_parts_mut(v.tensor.data_ptr() as *mut f32, n),
                std::slice::from_raw_parts(g.tensor.data_ptr() as *const f32, n),
            )
        };
        one_pass(c, ps, ms, vs, gs);
    } else {
        // Seven libtorch passes, each in place (a GPU runs them as kernels).
        let (mut p, mut m, mut v) = (
            p.tensor.shallow_clone(),
            m.tensor.shallow_clone(),
            v.tensor.shallow_clone(),
        );
        let mut g = own(g).tensor;
        let _ = m.lerp_(&g, c.w1);
        let _ = g.square_(); // g is g² from here on
        let _ = v.lerp_(&g, c.w2);
        let _ = v.sqrt_out(&g);
        let _ = g.g_mul_scalar_(c.inv_sqrt_bc2);
        let _ = g.g_add_scalar_(c.eps);
        let _ = g.g_mul_scalar_(c.neg_step);
        let _ = p.addcdiv_(&m, &g);
    }
    let t = |x: TchTensor| Tensor::<D>::from_primitive::<LibTorch>(x);
    let state = AdamState {
        momentum: AdaptiveMomentumState::new(time, t(m), t(v)),
    };
    Ok((t(p), Some(state)))
}

/// The scalars of one Adam update (see the module docs).
#[cfg(feature = "tch")]
#[derive(Clone, Copy)]
struct Coefficients {
    w1: f64,
    w2: f64,
    inv_sqrt_bc2: f64,
    eps: f64,
    /// `−(1 − β₁ᵗ) / lr`: the denominator's factor, so that the update is an addition.
    neg_step: f64,
}

/// Elements per task of the parallel update.
#[cfg(feature = "tch")]
const CHUNK: usize = 1 << 15;

#[cfg(feature = "tch")]
/// One pass over a parameter, its gradient and moments: what seven libtorch passes did.
fn one_pass(c: Coefficients, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
    use rayon::prelude::*;
    // The scalars in f32, as libtorch's f32 kernels use them.
    let (w1, w2, s2, eps, neg) = (
        c.w1 as f32,
        c.w2 as f32,
        c.inv_sqrt_bc2 as f32,
        c.eps as f32,
        c.neg_step as f32,
    );
    let update = |(((p, m), v), g): (((&mut [f32], &mut [f32]), &mut [f32]), &[f32])| {
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let mi = *m + w1 * (g - *m);
            let vi = *v + w2 * (g * g - *v);
            *m = mi;
            *v = vi;
            *p += mi / ((vi.sqrt() * s2 + eps) * neg);
        }
    };
    if p.len() <= CHUNK {
        update((((p, m), v), g));
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(update);
    }
}

#[cfg(all(test, feature = "tch"))]
mod tests {
    #![allow(deprecated)] // burn marks its libtorch device deprecated; the crate uses it.

    use super::*;
    use burn::tensor::TensorData;

    fn vals(t: &Tensor<2>) -> Vec<f32> {
        t.clone()
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap()
    }

    fn data(n: usize, salt: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| ((i * 2_654_435_761 + salt * 97) % 10_007) as f32 / 10_007.0 * 2.0 - 1.0)
            .collect()
    }

    /// Five steps with changing gradients, on a parameter above and one below the parallel
    /// chunk size: burn's `Adam` on flex and this one on libtorch CPU agree to float rounding,
    /// the moments too, and a step that shares the parameter's storage leaves the other holder
    /// untouched.
    #[test]
    fn matches_burns_adam_and_never_writes_a_shared_storage() {
        let tch = crate::device::select("tch", 0).unwrap().device;
        let flex = crate::device::select("flex", 0).unwrap().device;
        let (b1, b2, eps, lr) = (0.9, 0.98, 1e-6, 2e-3);
        let fast = FastAdam::new(b1, b2, eps);
        let burn_adam = AdamConfig::new()
            .with_beta_1(b1)
            .with_beta_2(b2)
            .with_epsilon(eps)
            .build();
        for shape in [[300, 401], [7, 5]] {
            let n = shape[0] * shape[1];
            let t =
                |dev: &Device, v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, shape), dev);
            let (mut p, mut s) = (t(&tch, data(n, 1)), None);
            let (mut q, mut r) = (t(&flex, data(n, 1)), None);
            for step in 0..5u64 {
                // On odd steps another holder shares the parameter's storage.
                let held = (step % 2 == 1).then(|| p.clone());
                let before = held.as_ref().map(vals);
                let g = data(n, 10 + step);
                (p, s) = fast.step(lr, p, t(&tch, g.clone()), s);
                (q, r) = burn_adam.step(lr, q, t(&flex, g), r);
                assert_eq!(
                    held.as_ref().map(vals),
                    before,
                    "a shared storage was written"
                );
                let (a, b) = (vals(&p), vals(&q));
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-6,
                    "{shape:?} step {step}: parameters differ by {worst}"
                );
            }
            let (s, r) = (s.unwrap().momentum, r.unwrap().momentum);
            assert_eq!(s.time, r.time);
            for (x, y) in [(s.moment_1, r.moment_1), (s.moment_2, r.moment_2)] {
                let (x, y) = (vals(&x), vals(&y));
                let worst = x
                    .iter()
                    .zip(&y)
                    .map(|(a, b)| (a - b).abs() / (1e-6 + b.abs()))
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "{shape:?}: moments differ by {worst} (relative)"
                );
            }
        }
    }
}
