//! Neural networks, independent of the stages that use them: ResNet-50 (patch features), the
//! BERT encoder, and FashionBERT's embeddings, heads and losses.

pub mod batch;
pub mod bert;
pub mod fashionbert;
pub mod fused;
pub mod io;
pub mod kernels;
pub mod losses;
pub mod resnet;
