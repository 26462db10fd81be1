//! `pairs`: the positive image–text pairs, one per image: the image with its own product's text,
//! label 1 (= matched, as in the original). The pair table's format is `schema::pairs`.

use crate::dag::{Input, RunContext, Stage, StageError, StageSpec};

use crate::schema::{Pair, read_products, write_pairs};

pub const SPEC: StageSpec = StageSpec {
    name: "pairs",
    version: 1,
    about: "positive image–text pairs (label 1 = matched)",
    inputs: &[Input::all("ingest")],
    params: &[],
    outputs: &["pairs.parquet"],
};

pub struct Pairs;

impl Stage for Pairs {
    fn spec(&self) -> &'static StageSpec {
        &SPEC
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let products = read_products(&ctx.input("ingest", "products.parquet")?)?;
        let pairs: Vec<Pair> = products
            .iter()
            .map(|p| Pair {
                pair_id: format!("p:{}", p.image_id),
                split: p.split.clone(),
                image_id: p.image_id.clone(),
                image_product_id: p.product_id.clone(),
                text_product_id: p.product_id.clone(),
                label: 1,
                category: p.category.clone(),
                subcategory: p.subcategory.clone(),
                text: p.text.clone(),
                fallback: String::new(),
                round: -1,
            })
            .collect();
        write_pairs(&pairs, &ctx.out("pairs.parquet"))?;
        for split in ["train", "valid"] {
            ctx.count(
                split,
                pairs.iter().filter(|p| p.split == split).count() as u64,
            );
        }
        Ok(())
    }
}
