//! The embedded default PuDDing routers: the committed k = 3 and k = 6 candidate pools for
//! SmolLM2-135M-Instruct and their router heads (`examples/default/`, made as docs/router.md
//! shows), compiled into the binary so that a routed generation needs no files besides the
//! model and the MiniLM encoder (both fetched on first use).

use crate::router_commands::load_encoder;
use burn::prelude::Backend as BackendTrait;
use pudding_core::{CandidatePool, SkippableLm};
use pudding_models::LlamaLm;
use pudding_router::router::PuddingRouter;
use std::error::Error;

/// One embedded router: its k, the pool's JSON, the router card's JSON and the head's
/// safetensors bytes.
struct Embedded {
    k: usize,
    pool_json: &'static str,
    card_json: &'static str,
    head_safetensors: &'static [u8],
}

const EMBEDDED: [Embedded; 2] = [
    Embedded {
        k: 3,
        pool_json: include_str!("../default/pool-k3.json"),
        card_json: include_str!("../default/router-k3/router.json"),
        head_safetensors: include_bytes!("../default/router-k3/head.safetensors"),
    },
    Embedded {
        k: 6,
        pool_json: include_str!("../default/pool-k6.json"),
        card_json: include_str!("../default/router-k6/router.json"),
        head_safetensors: include_bytes!("../default/router-k6/head.safetensors"),
    },
];

/// The numbers of skipped blocks that have an embedded router.
pub const EMBEDDED_KS: [usize; 2] = [EMBEDDED[0].k, EMBEDDED[1].k];

/// The embedded router for `k`.
fn embedded(k: usize) -> Result<&'static Embedded, EmbeddedRouterError> {
    EMBEDDED
        .iter()
        .find(|e| e.k == k)
        .ok_or(EmbeddedRouterError::NoSuchK {
            k,
            available: EMBEDDED_KS,
        })
}

/// Errors unless an embedded router skips `k` blocks (cheap: check it before loading a
/// model).
pub fn check_embedded_k(k: usize) -> Result<(), EmbeddedRouterError> {
    embedded(k).map(|_| ())
}

/// Why the embedded router cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedRouterError {
    /// No embedded router skips this many blocks.
    #[error("no embedded router skips {k} blocks; the embedded ones skip {available:?}")]
    NoSuchK {
        /// The k asked for.
        k: usize,
        /// The ks that have one.
        available: [usize; 2],
    },
    /// The loaded model is not the one the embedded pools were searched on.
    #[error(
        "the embedded routers are for SmolLM2-135M-Instruct, not this model ({detail}); \
         route with a pool and router built for this model (--pool and --router, \
         docs/getting-started.md), or skip a fixed set of blocks (--skip)"
    )]
    OtherModel {
        /// The fingerprint mismatch.
        detail: String,
    },
}

/// `embedded`'s pool, validated and checked against `lm`'s fingerprint.
fn pool_of<B: BackendTrait>(
    embedded: &Embedded,
    lm: &LlamaLm<B>,
) -> Result<CandidatePool, Box<dyn Error>> {
    let pool: CandidatePool = serde_json::from_str(embedded.pool_json)?;
    let pool = CandidatePool::new(pool.fingerprint, pool.candidates)?;
    pool.check_model(lm.fingerprint())
        .map_err(|e| EmbeddedRouterError::OtherModel {
            detail: e.to_string(),
        })?;
    Ok(pool)
}

/// The embedded router for `k` skipped blocks on `lm` (which must be SmolLM2-135M-Instruct,
/// the model its pool was searched on), with the all-MiniLM-L6-v2 encoder fetched on first
/// use.
pub fn embedded_router<B: BackendTrait>(
    k: usize,
    lm: &LlamaLm<B>,
    device: &B::Device,
) -> Result<PuddingRouter<B>, Box<dyn Error>> {
    let embedded = embedded(k)?;
    let pool = pool_of(embedded, lm)?;
    let encoder = load_encoder::<B>(device)?;
    Ok(PuddingRouter::from_bytes(
        embedded.card_json,
        embedded.head_safetensors,
        pool,
        encoder,
        device,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every embedded pool parses, validates and skips the k it is filed under, and the
    /// list of ks matches the table.
    #[test]
    fn embedded_pools_are_valid_and_skip_their_k() {
        assert_eq!(EMBEDDED.map(|e| e.k), EMBEDDED_KS);
        for e in &EMBEDDED {
            let pool: CandidatePool = serde_json::from_str(e.pool_json).unwrap();
            let pool = CandidatePool::new(pool.fingerprint, pool.candidates).unwrap();
            assert!(!pool.candidates.is_empty());
            for c in &pool.candidates {
                assert_eq!(c.set.len(), e.k, "a k = {} candidate skips {}", e.k, c.set);
            }
        }
    }
}
