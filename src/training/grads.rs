//! Gradient handling: global-norm clipping (as `tf.clip_by_global_norm`, without a host sync)
//! and the split of gradients between pretrained and new parameters (separate learning rates).

use std::collections::HashSet;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::models::fashionbert::FashionBert;

struct SqNorm<'a> {
    g: &'a GradientsParams,
    seen: HashSet<ParamId>,
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for SqNorm<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if self.seen.insert(p.id) {
            if let Some(g) = self.g.get::<D>(p.id) {
                self.parts.push(g.square().sum());
            }
        }
    }
}

struct Scale<'a> {
    g: &'a mut GradientsParams,
    seen: HashSet<ParamId>,
    coef: Tensor<1>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if self.seen.insert(p.id) {
            if let Some(g) = self.g.remove::<D>(p.id) {
                let c = self.coef.clone().reshape([1usize; D]);
                self.g.register::<D>(p.id, g * c);
            }
        }
    }
}

/// Scales all gradients by `min(1, max_norm / ‖g‖)`; returns the global norm (on device).
pub fn clip_global_norm<M: Module>(
    m: &M,
    mut g: GradientsParams,
    max_norm: f32,
) -> (GradientsParams, Tensor<1>) {
    let mut v = SqNorm {
        g: &g,
        seen: HashSet::new(),
        parts: vec![],
    };
    m.visit(&mut v);
    let norm = Tensor::cat(v.parts, 0).sum().sqrt();
    let coef = (norm.clone().add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
    let mut s = Scale {
        g: &mut g,
        seen: HashSet::new(),
        coef,
    };
    m.visit(&mut s);
    (g, norm)
}

/// The parameters a pretrained BERT checkpoint does not provide: image embeddings, every head
/// and the ITC and ITM-pair projections (the text backbone — embeddings, encoder, pooler — is pretrained).
pub(super) fn new_param_ids(model: &FashionBert) -> HashSet<ParamId> {
    struct Ids(HashSet<ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.insert(p.id);
        }
    }
    let mut ids = Ids(HashSet::new());
    model.bert.image_embeddings.visit(&mut ids);
    model.cls.visit(&mut ids);
    model.itc.visit(&mut ids);
    model.itm.visit(&mut ids);
    ids.0
}

/// Splits gradients into (pretrained, new) by parameter id.
pub(super) fn split_grads(
    model: &FashionBert,
    mut grads: GradientsParams,
    new: &HashSet<ParamId>,
) -> (GradientsParams, GradientsParams) {
    struct Split<'a> {
        from: &'a mut GradientsParams,
        to: GradientsParams,
        new: &'a HashSet<ParamId>,
    }
    impl ModuleVisitor for Split<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if self.new.contains(&p.id) {
                if let Some(g) = self.from.remove::<D>(p.id) {
                    self.to.register::<D>(p.id, g);
                }
            }
        }
    }
    let mut s = Split {
        from: &mut grads,
        to: GradientsParams::new(),
        new,
    };
    model.visit(&mut s);
    let new_grads = s.to;
    (grads, new_grads)
}
