//! The default PuDDing routers: the committed k = 3 and k = 6 candidate pools for
//! SmolLM2-135M-Instruct and their router heads (`crates/pudding-router/default/`, made as
//! docs/router.md shows), compiled into this crate so that a routed generation needs no
//! files besides the model and the all-MiniLM-L6-v2 encoder (both fetched on first use).
//!
//! The crate-level example routes and generates with the k = 3 router.

use crate::router::PuddingRouter;
use crate::RouterError;
use burn::prelude::Backend as BackendTrait;
use pudding_core::{CandidatePool, SkippableLm};
use pudding_models::assets::ensure_minilm;
use pudding_models::bert::BertEncoder;

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
    /// The embedded pool, the encoder or the head failed to load.
    #[error(transparent)]
    Router(#[from] RouterError),
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
fn pool_of<L: SkippableLm>(
    embedded: &Embedded,
    lm: &L,
) -> Result<CandidatePool, EmbeddedRouterError> {
    let malformed = |reason: String| RouterError::Malformed {
        what: "embedded pool",
        path: format!("pool-k{}.json", embedded.k),
        line: 0,
        reason,
    };
    let pool: CandidatePool =
        serde_json::from_str(embedded.pool_json).map_err(|e| malformed(e.to_string()))?;
    let pool = CandidatePool::new(pool.fingerprint, pool.candidates).map_err(RouterError::Core)?;
    pool.check_model(lm.fingerprint())
        .map_err(|e| EmbeddedRouterError::OtherModel {
            detail: e.to_string(),
        })?;
    Ok(pool)
}

/// The embedded router for `k` skipped blocks (3 or 6, [`EMBEDDED_KS`]) on `lm`, which
/// must be SmolLM2-135M-Instruct (the model its pool was searched on: checked by
/// fingerprint), with the all-MiniLM-L6-v2 encoder fetched into `$PUDDING_HOME` on first
/// use. Checks the model before it fetches or loads the encoder.
pub fn embedded_router<B: BackendTrait, L: SkippableLm>(
    k: usize,
    lm: &L,
    device: &B::Device,
) -> Result<PuddingRouter<B>, EmbeddedRouterError> {
    let embedded = embedded(k)?;
    let pool = pool_of(embedded, lm)?;
    let encoder = BertEncoder::load(&ensure_minilm().map_err(RouterError::Model)?, device)
        .map_err(RouterError::Model)?;
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
