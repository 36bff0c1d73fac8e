//! [`Pudding`]: route once per prompt, then run the language model with the chosen
//! candidate's blocks skipped for the whole request.

use crate::{CoreError, Generation, GenerationConfig, RouteDecision, Router, SkippableLm};

/// Errors of the pipeline: from the router, the model, or their pairing.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The router and the model do not belong together.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Routing failed.
    #[error("routing failed: {0}")]
    Router(String),
    /// The language model failed.
    #[error("language model failed: {0}")]
    Model(String),
}

/// A language model paired with a router made for it.
pub struct Pudding<'a, L: SkippableLm, R: Router> {
    lm: &'a L,
    router: &'a R,
}

impl<'a, L: SkippableLm, R: Router> Pudding<'a, L, R> {
    /// Pairs `lm` with `router`; errors when the router's pool was built for another model.
    pub fn new(lm: &'a L, router: &'a R) -> Result<Self, PipelineError> {
        router.pool().check_model(lm.fingerprint())?;
        Ok(Self { lm, router })
    }

    /// The routing decision for `prompt` (candidate, blocks, scores, router time).
    pub fn route(&self, prompt: &str) -> Result<RouteDecision, PipelineError> {
        self.router
            .route(prompt)
            .map_err(|e| PipelineError::Router(e.to_string()))
    }

    /// Routes `router_text` once, then generates from `prompt_ids` with the chosen set.
    pub fn generate(
        &self,
        router_text: &str,
        prompt_ids: &[u32],
        config: &GenerationConfig,
    ) -> Result<(RouteDecision, Generation), PipelineError> {
        let decision = self.route(router_text)?;
        let generation = self
            .lm
            .generate(prompt_ids, &decision.set, config)
            .map_err(|e| PipelineError::Model(e.to_string()))?;
        Ok((decision, generation))
    }
}
