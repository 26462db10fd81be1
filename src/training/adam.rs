//! Adam with fewer passes over memory: the optimiser `train` and the bench use.
//!
//! burn's `Adam` makes about fourteen elementwise passes over each parameter per step (moments,
//! bias corrections, square root, division, scaling), most into fresh tensors; for the 24 M
//! parameters of a MiniLM-size FashionBERT that was a tenth of a CPU training step. On libtorch
//! f32 tensors this one makes seven, in place where the storage is not shared — PyTorch's
//! single-tensor Adam formulation:
//!
//! ```text
//! m ← m + (1 − β₁)(g − m)             v ← v + (1 − β₂)(g² − v)
//! p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! which is burn's update in another order of float operations. Elsewhere (flex) it is burn's
//! `Adam`. The state is burn's `AdamState`, so checkpoints (`optim.bpk`) are the same format.

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
    // Every pass writes into a tensor it owns: a fresh allocation of a large parameter's size
    // costs more than the arithmetic (the kernel zeroes its pages).
    let own = |x: TchTensor| {
        if x.can_mut() {
            x
        } else {
            TchTensor::new(x.tensor.copy())
        }
    };
    let (b1, b2) = (o.beta_1 as f64, o.beta_2 as f64);
    let (time, m, v) = match moments {
        Some((t, m, v)) => {
            let (mut m, mut v) = (own(m), own(v));
            g = own(g);
            let _ = m.tensor.lerp_(&g.tensor, 1.0 - b1);
            let _ = g.tensor.square_(); // g is g² from here on
            let _ = v.tensor.lerp_(&g.tensor, 1.0 - b2);
            (t + 1, m, v)
        }
        None => {
            let m = TchTensor::new(&g.tensor * (1.0 - b1));
            g = own(g);
            let _ = g.tensor.square_();
            let v = TchTensor::new(&g.tensor * (1.0 - b2));
            (1, m, v)
        }
    };
    let bc1 = 1.0 - b1.powi(time as i32);
    let bc2 = 1.0 - b2.powi(time as i32);
    // g ← (√v / √bc2 + ε) · (−bc1 / lr), then p ← p + m / g = p − (lr / bc1) · m / (√v̂ + ε).
    let _ = v.tensor.sqrt_out(&g.tensor);
    let _ = g.tensor.g_mul_scalar_(1.0 / bc2.sqrt());
    let _ = g.tensor.g_add_scalar_(o.epsilon as f64);
    let _ = g.tensor.g_mul_scalar_(-bc1 / lr);
    p = own(p);
    let _ = p.tensor.addcdiv_(&m.tensor, &g.tensor);
    let t = |x: TchTensor| Tensor::<D>::from_primitive::<LibTorch>(x);
    let state = AdamState {
        momentum: AdaptiveMomentumState::new(time, t(m), t(v)),
    };
    Ok((t(p), Some(state)))
}
