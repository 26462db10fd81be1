//! BERT WordPiece tokenisation (bert-base-uncased rules) on top of the `tokenizers` crate:
//! BERT normaliser (clean text, CJK splitting, lower-case, strip accents), BERT pre-tokeniser
//! (whitespace and punctuation), WordPiece with `##` continuations and `[UNK]`, then
//! `[CLS] pieces [SEP]` truncated and padded to a fixed length, as `BertTokenizerFast` does.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;

use crate::error::{Error, Result};

/// The special token ids of the bert-base-uncased vocabulary, checked when the vocab loads.
pub mod special {
    pub const PAD: u32 = 0;
    pub const UNK: u32 = 100;
    pub const CLS: u32 = 101;
    pub const SEP: u32 = 102;
    pub const MASK: u32 = 103;
    /// Ids below this are [PAD], [unusedN], [UNK], [CLS], [SEP], [MASK]: never a random replacement.
    pub const FIRST_REAL: u32 = 999;
}

/// One text, encoded to a fixed length.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// `[CLS] pieces [SEP] 0 0 …`, exactly `max_len` ids.
    pub ids: Vec<u32>,
    /// 1 for real tokens (including [CLS] and [SEP]), 0 for padding.
    pub mask: Vec<u8>,
    /// Number of real tokens (including [CLS] and [SEP]).
    pub len: usize,
    /// Whether wordpieces were cut to fit.
    pub truncated: bool,
    /// For each real position, whether the piece starts a word (`##` pieces do not); for
    /// whole-word masking.
    pub word_start: Vec<bool>,
}

pub struct BertTokenizer {
    inner: Tokenizer,
    vocab_size: usize,
    vocab_path: PathBuf,
}

impl BertTokenizer {
    /// Loads a `vocab.txt` (one token per line, id = line number).
    pub fn from_vocab(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::input(
                path,
                format!(
                    "cannot read the WordPiece vocabulary ({e}); run `make weights` to fetch it"
                ),
            )
        })?;
        let tokens: Vec<&str> = text.lines().collect();
        for (id, tok) in [
            (special::PAD, "[PAD]"),
            (special::UNK, "[UNK]"),
            (special::CLS, "[CLS]"),
            (special::SEP, "[SEP]"),
            (special::MASK, "[MASK]"),
        ] {
            if tokens.get(id as usize).copied() != Some(tok) {
                return Err(Error::input(
                    path,
                    format!("not a bert-base-uncased style vocabulary: id {id} should be {tok}"),
                ));
            }
        }
        let wp = WordPiece::from_file(&path.to_string_lossy())
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| Error::input(path, format!("bad vocabulary: {e}")))?;
        let mut inner = Tokenizer::new(wp);
        inner.with_normalizer(Some(BertNormalizer::new(true, true, None, true)));
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        Ok(Self {
            inner,
            vocab_size: tokens.len(),
            vocab_path: path.to_path_buf(),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn vocab_path(&self) -> &Path {
        &self.vocab_path
    }

    /// The wordpieces of `text` (no specials, no truncation) and whether each starts a word.
    pub fn pieces(&self, text: &str) -> Result<(Vec<u32>, Vec<bool>)> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|source| Error::Tokenize {
                text: text.to_string(),
                source,
            })?;
        let starts = enc
            .get_tokens()
            .iter()
            .map(|t| !t.starts_with("##"))
            .collect();
        Ok((enc.get_ids().to_vec(), starts))
    }

    /// `[CLS] pieces [SEP]`, pieces cut so the whole fits `max_len`, padded with 0.
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Encoded> {
        assert!(max_len >= 2, "max_len must leave room for [CLS] and [SEP]");
        let (mut pieces, mut starts) = self.pieces(text)?;
        let room = max_len - 2;
        let truncated = pieces.len() > room;
        pieces.truncate(room);
        starts.truncate(room);
        let len = pieces.len() + 2;
        let mut ids = Vec::with_capacity(max_len);
        ids.push(special::CLS);
        ids.extend_from_slice(&pieces);
        ids.push(special::SEP);
        ids.resize(max_len, special::PAD);
        let mut mask = vec![1u8; len];
        mask.resize(max_len, 0);
        let mut word_start = Vec::with_capacity(len);
        word_start.push(true);
        word_start.extend_from_slice(&starts);
        word_start.push(true);
        Ok(Encoded {
            ids,
            mask,
            len,
            truncated,
            word_start,
        })
    }

    /// Encodes many texts in parallel, in order.
    pub fn encode_all(&self, texts: &[String], max_len: usize) -> Result<Vec<Encoded>> {
        use rayon::prelude::*;
        texts.par_iter().map(|t| self.encode(t, max_len)).collect()
    }
}
