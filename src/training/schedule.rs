//! The learning-rate schedule of the original (Google BERT's `create_optimizer`): linear warm-up
//! over the first `warmup` share of steps, then linear decay to 0 at the last step.

/// The learning rate for update `step` (0-based) of `total`.
pub fn learning_rate(base: f64, warmup: f64, step: usize, total: usize) -> f64 {
    let total = total.max(1) as f64;
    let warm = (warmup * total).floor();
    let s = step as f64 + 1.0;
    if s <= warm {
        base * s / warm
    } else {
        base * (1.0 - (s - 1.0) / total).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_zero() {
        let lrs: Vec<f64> = (0..100).map(|s| learning_rate(1.0, 0.1, s, 100)).collect();
        assert!((lrs[0] - 0.1).abs() < 1e-12);
        assert!((lrs[9] - 1.0).abs() < 1e-12, "peak at the end of warm-up");
        assert!(lrs[10] < lrs[9] && lrs[10] > 0.85);
        assert!(
            lrs.windows(2).skip(10).all(|w| w[1] < w[0]),
            "monotone decay"
        );
        assert!(lrs[99] > 0.0 && lrs[99] <= 0.011);
    }
}
