//! Text side: BERT WordPiece tokenisation and BERT-style masking.

pub mod masking;
pub mod tokenizer;

pub use masking::{MaskConfig, MaskedTokens, mask_tokens};
pub use tokenizer::{BertTokenizer, Encoded, special};
