//! ResNet-50, in both conventions:
//!
//! - **v1** (the original MSRA/Caffe ResNet, Keras applications, tf-slim `resnet_v1_50`): the
//!   stride 2 of layers 2–4 sits in block 0's first 1×1 convolution; BatchNorm eps 1e-3;
//!   Caffe preprocessing (BGR, 0–255, mean subtraction).
//! - **v1.5** (torchvision `resnet50`): the stride in the 3×3 convolution; eps 1e-5; ImageNet
//!   mean/std on RGB in 0–1.
//!
//! Module and field names mirror torchvision's state-dict names (`conv1`, `bn1`,
//! `layer1.0.conv1`, …, `fc`), so loading torchvision weights is construction plus two renames
//! (`downsample.0` → `downsample.conv`, `downsample.1` → `downsample.bn`).
//! For inference, [`ResNet50::fold`] folds every BatchNorm into its convolution.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Which ResNet-50 convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Convention {
    V1,
    V1_5,
}

impl Convention {
    pub fn parse(s: &str) -> Option<Convention> {
        match s {
            "v1" => Some(Convention::V1),
            "v1.5" | "v1_5" | "torchvision" => Some(Convention::V1_5),
            _ => None,
        }
    }

    pub fn bn_eps(self) -> f64 {
        match self {
            Convention::V1 => 1e-3,
            Convention::V1_5 => 1e-5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Convention::V1 => "v1",
            Convention::V1_5 => "v1.5",
        }
    }

    /// Preprocesses RGB8 pixels (HWC, row-major) into CHW floats, appending to `out`.
    pub fn preprocess_into(self, rgb: &[u8], hw: usize, out: &mut Vec<f32>) {
        let base = out.len();
        out.resize(base + 3 * hw, 0.0);
        let o = &mut out[base..];
        match self {
            // Caffe: BGR order, 0..255, minus the BGR mean.
            Convention::V1 => {
                const MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
                for i in 0..hw {
                    for c in 0..3 {
                        // channel c of the output is BGR[c] = RGB[2 - c]
                        o[c * hw + i] = rgb[i * 3 + (2 - c)] as f32 - MEAN_BGR[c];
                    }
                }
            }
            Convention::V1_5 => {
                const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
                const STD: [f32; 3] = [0.229, 0.224, 0.225];
                for i in 0..hw {
                    for c in 0..3 {
                        o[c * hw + i] = (rgb[i * 3 + c] as f32 / 255.0 - MEAN[c]) / STD[c];
                    }
                }
            }
        }
    }
}

#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// A bottleneck block: 1×1 → 3×3 → 1×1 (×4 channels), with a projection shortcut in block 0.
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub conv3: Conv2d,
    pub bn3: BatchNorm,
    pub downsample: Option<Downsample>,
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

fn bn(n: usize, eps: f64, device: &Device) -> BatchNorm {
    BatchNormConfig::new(n).with_epsilon(eps).init(device)
}

impl Bottleneck {
    fn new(cin: usize, width: usize, stride: usize, conv: Convention, device: &Device) -> Self {
        let eps = conv.bn_eps();
        let cout = width * 4;
        let (s1, s2) = match conv {
            Convention::V1 => (stride, 1),
            Convention::V1_5 => (1, stride),
        };
        let downsample = (stride != 1 || cin != cout).then(|| Downsample {
            conv: self::conv(cin, cout, 1, stride, device),
            bn: bn(cout, eps, device),
        });
        Bottleneck {
            conv1: self::conv(cin, width, 1, s1, device),
            bn1: bn(width, eps, device),
            conv2: self::conv(width, width, 3, s2, device),
            bn2: bn(width, eps, device),
            conv3: self::conv(width, cout, 1, 1, device),
            bn3: bn(cout, eps, device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let y = relu(self.bn1.forward(self.conv1.forward(x)));
        let y = relu(self.bn2.forward(self.conv2.forward(y)));
        let y = self.bn3.forward(self.conv3.forward(y));
        relu(y + identity)
    }
}

/// ResNet-50 with torchvision's module names.
#[derive(Module, Debug)]
pub struct ResNet50 {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub maxpool: MaxPool2d,
    pub layer1: Vec<Bottleneck>,
    pub layer2: Vec<Bottleneck>,
    pub layer3: Vec<Bottleneck>,
    pub layer4: Vec<Bottleneck>,
    pub avgpool: AdaptiveAvgPool2d,
    pub fc: Linear,
    #[module(skip)]
    pub convention: Convention,
}

/// Blocks per layer and widths of ResNet-50.
const LAYERS: [(usize, usize, usize); 4] = [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)];

impl ResNet50 {
    /// A randomly initialised ResNet-50 (load weights with [`crate::weights::load_resnet50`]).
    pub fn new(convention: Convention, device: &Device) -> Self {
        let mut cin = 64;
        let mut layers: Vec<Vec<Bottleneck>> = Vec::new();
        for (blocks, width, stride) in LAYERS {
            let mut layer = Vec::new();
            for b in 0..blocks {
                layer.push(Bottleneck::new(
                    cin,
                    width,
                    if b == 0 { stride } else { 1 },
                    convention,
                    device,
                ));
                cin = width * 4;
            }
            layers.push(layer);
        }
        let mut it = layers.into_iter();
        ResNet50 {
            conv1: Conv2dConfig::new([3, 64], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .init(device),
            bn1: bn(64, convention.bn_eps(), device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: it.next().unwrap(),
            layer2: it.next().unwrap(),
            layer3: it.next().unwrap(),
            layer4: it.next().unwrap(),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(2048, 1000).init(device),
            convention,
        }
    }

    /// The 2048-d global-average-pool feature, `[N, 2048]`, of preprocessed `[N, 3, H, W]` input.
    pub fn pooled(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let mut x = self.maxpool.forward(x);
        for b in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = b.forward(x);
        }
        let [n, c, _, _] = x.dims();
        self.avgpool.forward(x).reshape([n, c])
    }

    /// ImageNet logits, `[N, 1000]`.
    pub fn logits(&self, pooled: Tensor<2>) -> Tensor<2> {
        self.fc.forward(pooled)
    }

    /// The same network for inference with every BatchNorm folded into the preceding
    /// convolution (`w·γ/√(σ²+ε)`, bias `β − μγ/√(σ²+ε)`): one kernel fewer per conv.
    pub fn fold(&self) -> FoldedResNet50 {
        let f = |c: &Conv2d, b: &BatchNorm| fold_conv_bn(c, b);
        let block = |b: &Bottleneck| FoldedBottleneck {
            conv1: f(&b.conv1, &b.bn1),
            conv2: f(&b.conv2, &b.bn2),
            conv3: f(&b.conv3, &b.bn3),
            downsample: b.downsample.as_ref().map(|d| f(&d.conv, &d.bn)),
        };
        let layer = |l: &Vec<Bottleneck>| l.iter().map(block).collect::<Vec<_>>();
        FoldedResNet50 {
            conv1: f(&self.conv1, &self.bn1),
            maxpool: self.maxpool.clone(),
            layers: vec![
                layer(&self.layer1),
                layer(&self.layer2),
                layer(&self.layer3),
                layer(&self.layer4),
            ],
            avgpool: self.avgpool.clone(),
            fc: self.fc.clone(),
        }
    }
}

fn fold_conv_bn(c: &Conv2d, b: &BatchNorm) -> Conv2d {
    let w = c.weight.val();
    let [out, _, _, _] = w.dims();
    let var = b.running_var.value();
    let mean = b.running_mean.value();
    let scale = b.gamma.val() / (var + b.epsilon).sqrt();
    let bias = b.beta.val() - mean * scale.clone();
    let mut folded = c.clone();
    folded.weight = Param::from_tensor(w * scale.reshape([out, 1, 1, 1]));
    folded.bias = Some(Param::from_tensor(bias));
    folded
}

#[derive(Module, Debug)]
pub struct FoldedBottleneck {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    downsample: Option<Conv2d>,
}

/// ResNet-50 with BatchNorm folded away: inference only.
#[derive(Module, Debug)]
pub struct FoldedResNet50 {
    conv1: Conv2d,
    maxpool: MaxPool2d,
    layers: Vec<Vec<FoldedBottleneck>>,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl FoldedResNet50 {
    /// The global-average-pool feature `[N, 2048]`.
    pub fn pooled(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.feature_map(x);
        let [n, c, _, _] = x.dims();
        self.avgpool.forward(x).reshape([n, c])
    }

    /// The last stage's map `[N, 2048, H/32, W/32]`, before pooling.
    pub fn feature_map(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.conv1.forward(x));
        let mut x = self.maxpool.forward(x);
        for b in self.layers.iter().flatten() {
            let identity = match &b.downsample {
                Some(d) => d.forward(x.clone()),
                None => x.clone(),
            };
            let y = relu(b.conv1.forward(x));
            let y = relu(b.conv2.forward(y));
            x = relu(b.conv3.forward(y) + identity);
        }
        x
    }

    pub fn logits(&self, pooled: Tensor<2>) -> Tensor<2> {
        self.fc.forward(pooled)
    }
}
