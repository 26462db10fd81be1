//! The model's query encoder for the server: one thread that owns the model (libtorch tensors
//! stay on it), loaded on the first text or image query, fed through a channel.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

use crate::dag::{Latest, PipelineConfig};
use crate::eval::rank::Scorer;

/// A query to encode into the ITC space.
pub enum Query {
    Text(String),
    Image(image::RgbImage),
}

type Job = (Query, Sender<Result<Vec<f32>, String>>);

pub struct Encoder {
    config: PipelineConfig,
    keys: BTreeMap<String, String>,
    tx: Mutex<Option<Sender<Job>>>,
}

impl Encoder {
    pub fn new(config: PipelineConfig, keys: BTreeMap<String, String>) -> Encoder {
        Encoder {
            config,
            keys,
            tx: Mutex::new(None),
        }
    }

    /// The L2-normalised ITC embedding of `q` (blocks: call from a blocking task).
    pub fn encode(&self, q: Query) -> Result<Vec<f32>, String> {
        let tx = {
            let mut slot = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(self.start()?);
            }
            slot.as_ref().expect("started").clone()
        };
        let (rtx, rrx) = channel();
        tx.send((q, rtx))
            .map_err(|_| "the model's thread has stopped".to_string())?;
        rrx.recv()
            .map_err(|_| "the model's thread has stopped".to_string())?
    }

    fn start(&self) -> Result<Sender<Job>, String> {
        let (tx, rx) = channel::<Job>();
        let (ready_tx, ready_rx) = channel();
        let (config, keys) = (self.config.clone(), self.keys.clone());
        std::thread::Builder::new()
            .name("fashionbert-encoder".into())
            .spawn(move || {
                let scorer = Latest::pinned(config, keys)
                    .map_err(|e| e.to_string())
                    .and_then(|l| Scorer::from_pipeline(&l).map_err(|e| e.to_string()));
                let scorer = match scorer {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for (q, reply) in rx {
                    let v = match q {
                        Query::Text(t) => scorer.itc_text(&t),
                        Query::Image(img) => scorer.itc_image(&img),
                    };
                    let _ = reply.send(v.map_err(|e| e.to_string()));
                }
            })
            .map_err(|e| format!("starting the model's thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| "the model's thread stopped while loading".to_string())??;
        Ok(tx)
    }
}
