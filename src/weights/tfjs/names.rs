//! Keras-applications (Caffe-named) ResNet weights → torchvision's `resnet50` names and layouts,
//! and torchvision's `resnet50` tensor spec.

/// How a Keras tensor becomes a torchvision tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Conv kernel, HWIO → OIHW.
    ConvKernel,
    /// Conv bias: checked to be ~0 and dropped (torchvision convs have no bias).
    DropConvBias,
    /// Copied as is (BatchNorm vectors, dense bias).
    Copy,
    /// Dense kernel [in, out] → Linear weight [out, in].
    Transpose2d,
}

/// Maps a Keras-applications ResNet (Caffe naming) weight name to its torchvision name.
///
/// `res{s}{b}_branch{2a,2b,2c,1}/{kernel,bias}` → `layer{s-1}.{b}.{conv1,conv2,conv3,downsample.0}.weight`
/// (bias: the conv's would-be `.bias`, to be dropped), `bn{s}{b}_branch…/{gamma,beta,moving_mean,moving_variance}`
/// → `…{bn1,bn2,bn3,downsample.1}.{weight,bias,running_mean,running_var}`, `conv1`/`bn_conv1` → `conv1`/`bn1`,
/// `fc1000/{kernel,bias}` → `fc.{weight,bias}`. Block letters a, b, c … are indices 0, 1, 2 …
/// Returns `None` for names outside that scheme.
pub fn keras_to_torchvision(name: &str) -> Option<(String, Transform)> {
    let (layer, param) = name.split_once('/')?;
    let bn_param = |p: &str| -> Option<&'static str> {
        Some(match p {
            "gamma" => "weight",
            "beta" => "bias",
            "moving_mean" => "running_mean",
            "moving_variance" => "running_var",
            _ => return None,
        })
    };
    let conv_param = |p: &str| -> Option<(&'static str, Transform)> {
        Some(match p {
            "kernel" => ("weight", Transform::ConvKernel),
            "bias" => ("bias", Transform::DropConvBias),
            _ => return None,
        })
    };
    match layer {
        "conv1" => {
            let (p, t) = conv_param(param)?;
            return Some((format!("conv1.{p}"), t));
        }
        "bn_conv1" => return Some((format!("bn1.{}", bn_param(param)?), Transform::Copy)),
        "fc1000" => {
            return match param {
                "kernel" => Some(("fc.weight".to_string(), Transform::Transpose2d)),
                "bias" => Some(("fc.bias".to_string(), Transform::Copy)),
                _ => None,
            };
        }
        _ => {}
    }
    let (is_bn, rest) = if let Some(r) = layer.strip_prefix("res") {
        (false, r)
    } else if let Some(r) = layer.strip_prefix("bn") {
        (true, r)
    } else {
        return None;
    };
    let (block, branch) = rest.split_once("_branch")?;
    let mut chars = block.chars();
    let stage = chars.next()?.to_digit(10)?;
    let letter = chars.next()?;
    if chars.next().is_some() || !(2..=5).contains(&stage) || !letter.is_ascii_lowercase() {
        return None;
    }
    let index = (letter as u8 - b'a') as usize;
    let module = match (branch, is_bn) {
        ("2a", false) => "conv1",
        ("2b", false) => "conv2",
        ("2c", false) => "conv3",
        ("1", false) => "downsample.0",
        ("2a", true) => "bn1",
        ("2b", true) => "bn2",
        ("2c", true) => "bn3",
        ("1", true) => "downsample.1",
        _ => return None,
    };
    let prefix = format!("layer{}.{index}.{module}", stage - 1);
    if is_bn {
        Some((format!("{prefix}.{}", bn_param(param)?), Transform::Copy))
    } else {
        let (p, t) = conv_param(param)?;
        Some((format!("{prefix}.{p}"), t))
    }
}

/// HWIO (TF/Keras conv kernel) → OIHW (PyTorch). `shape` is the HWIO shape.
pub fn hwio_to_oihw(data: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let [h, w, i, o] = shape;
    assert_eq!(
        data.len(),
        h * w * i * o,
        "hwio_to_oihw: data length does not match shape {shape:?}"
    );
    let mut out = vec![0f32; data.len()];
    for hh in 0..h {
        for ww in 0..w {
            for ii in 0..i {
                let src = ((hh * w + ww) * i + ii) * o;
                for oo in 0..o {
                    out[((oo * i + ii) * h + hh) * w + ww] = data[src + oo];
                }
            }
        }
    }
    out
}

/// [rows, cols] → [cols, rows].
pub fn transpose_2d(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(
        data.len(),
        rows * cols,
        "transpose_2d: data length does not match {rows}x{cols}"
    );
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// torchvision `resnet50`'s float tensors (parameters and BatchNorm running statistics, no
/// `num_batches_tracked`) with their shapes, in state-dict order.
pub fn resnet50_torchvision_spec() -> Vec<(String, Vec<usize>)> {
    let mut spec = Vec::new();
    let bn = |spec: &mut Vec<(String, Vec<usize>)>, prefix: &str, c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            spec.push((format!("{prefix}.{p}"), vec![c]));
        }
    };
    spec.push(("conv1.weight".to_string(), vec![64, 3, 7, 7]));
    bn(&mut spec, "bn1", 64);
    let mut in_ch = 64;
    for (l, (&blocks, &width)) in [3usize, 4, 6, 3]
        .iter()
        .zip(&[64usize, 128, 256, 512])
        .enumerate()
    {
        let out_ch = width * 4;
        for b in 0..blocks {
            let p = format!("layer{}.{b}", l + 1);
            spec.push((format!("{p}.conv1.weight"), vec![width, in_ch, 1, 1]));
            bn(&mut spec, &format!("{p}.bn1"), width);
            spec.push((format!("{p}.conv2.weight"), vec![width, width, 3, 3]));
            bn(&mut spec, &format!("{p}.bn2"), width);
            spec.push((format!("{p}.conv3.weight"), vec![out_ch, width, 1, 1]));
            bn(&mut spec, &format!("{p}.bn3"), out_ch);
            if b == 0 {
                spec.push((
                    format!("{p}.downsample.0.weight"),
                    vec![out_ch, in_ch, 1, 1],
                ));
                bn(&mut spec, &format!("{p}.downsample.1"), out_ch);
            }
            in_ch = out_ch;
        }
    }
    spec.push(("fc.weight".to_string(), vec![1000, 2048]));
    spec.push(("fc.bias".to_string(), vec![1000]));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keras_names() {
        let m = |n: &str| keras_to_torchvision(n);
        assert_eq!(
            m("conv1/kernel"),
            Some(("conv1.weight".into(), Transform::ConvKernel))
        );
        assert_eq!(
            m("conv1/bias"),
            Some(("conv1.bias".into(), Transform::DropConvBias))
        );
        assert_eq!(
            m("bn_conv1/moving_variance"),
            Some(("bn1.running_var".into(), Transform::Copy))
        );
        assert_eq!(
            m("res2a_branch2a/kernel"),
            Some(("layer1.0.conv1.weight".into(), Transform::ConvKernel))
        );
        assert_eq!(
            m("res3d_branch2b/kernel"),
            Some(("layer2.3.conv2.weight".into(), Transform::ConvKernel))
        );
        assert_eq!(
            m("res4f_branch2c/bias"),
            Some(("layer3.5.conv3.bias".into(), Transform::DropConvBias))
        );
        assert_eq!(
            m("res5a_branch1/kernel"),
            Some(("layer4.0.downsample.0.weight".into(), Transform::ConvKernel))
        );
        assert_eq!(
            m("bn5a_branch1/gamma"),
            Some(("layer4.0.downsample.1.weight".into(), Transform::Copy))
        );
        assert_eq!(
            m("bn2c_branch2b/beta"),
            Some(("layer1.2.bn2.bias".into(), Transform::Copy))
        );
        assert_eq!(
            m("bn4b_branch2a/moving_mean"),
            Some(("layer3.1.bn1.running_mean".into(), Transform::Copy))
        );
        assert_eq!(
            m("fc1000/kernel"),
            Some(("fc.weight".into(), Transform::Transpose2d))
        );
        assert_eq!(m("fc1000/bias"), Some(("fc.bias".into(), Transform::Copy)));
        for bad in [
            "res6a_branch2a/kernel",
            "res2a_branch3/kernel",
            "bn2a_branch2a/foo",
            "dense/kernel",
            "conv1",
            "res2A_branch2a/kernel",
        ] {
            assert_eq!(m(bad), None, "{bad}");
        }
    }

    #[test]
    fn hwio_to_oihw_permutes() {
        let (h, w, i, o) = (2, 3, 4, 5);
        let code = |hh: usize, ww: usize, ii: usize, oo: usize| {
            (hh * 1000 + ww * 100 + ii * 10 + oo) as f32
        };
        let mut hwio = Vec::new();
        for hh in 0..h {
            for ww in 0..w {
                for ii in 0..i {
                    for oo in 0..o {
                        hwio.push(code(hh, ww, ii, oo));
                    }
                }
            }
        }
        let oihw = hwio_to_oihw(&hwio, [h, w, i, o]);
        let mut k = 0;
        for oo in 0..o {
            for ii in 0..i {
                for hh in 0..h {
                    for ww in 0..w {
                        assert_eq!(oihw[k], code(hh, ww, ii, oo));
                        k += 1;
                    }
                }
            }
        }
        assert_eq!(
            transpose_2d(&[1., 2., 3., 4., 5., 6.], 2, 3),
            vec![1., 4., 2., 5., 3., 6.]
        );
    }

    #[test]
    fn resnet50_spec_counts() {
        let spec = resnet50_torchvision_spec();
        assert_eq!(spec.len(), 267);
        let n: usize = spec.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        // torchvision's 25,557,032 parameters + 53,120 running_mean/var values.
        assert_eq!(n, 25_557_032 + 53_120);
        let names: std::collections::HashSet<_> = spec.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), spec.len());
    }
}
