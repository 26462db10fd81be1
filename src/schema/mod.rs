//! Artefact formats: the columns of each table the stages write, with their readers and
//! writers, shared by the stage that writes a table, the stages that read it, the CLI and the
//! bench. A stage module is its `SPEC` and `run`; what it writes is described here.

pub mod embeddings;
pub mod grid;
pub mod pairs;
pub mod products;

pub use grid::Grid;
pub use pairs::{Pair, read_pairs, write_pairs};
pub use products::{
    ImageRow, read_images, read_products, write_images, write_products, write_rejects,
};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A per-record RNG from the seed and the record id: masking does not depend on record order
/// or thread scheduling.
pub fn record_rng(seed: u64, id: &str) -> ChaCha8Rng {
    let h = blake3::hash(format!("{seed}\0{id}").as_bytes());
    ChaCha8Rng::from_seed(*h.as_bytes())
}
