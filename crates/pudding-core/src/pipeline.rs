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
    /// Pairs `lm` with `router`; errors when the router's pool was built for another model,
    /// or when the router cannot route a bare prompt ([`Router::reads_first_choice`]: such
    /// a router routes task items, through `pudding_eval`'s `RoutedChooser`).
    pub fn new(lm: &'a L, router: &'a R) -> Result<Self, PipelineError> {
        router.pool().check_model(lm.fingerprint())?;
        if router.reads_first_choice() {
            return Err(CoreError::RouterNeedsAnswerChoice.into());
        }
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

    /// Routes every request once, groups the requests routed to the same omission set and
    /// generates each group as one batch ([`SkippableLm::generate_batch`]). Each request
    /// is `(router_text, prompt_ids)`; results come back in request order.
    pub fn generate_many(
        &self,
        requests: &[(String, Vec<u32>)],
        config: &GenerationConfig,
    ) -> Result<Vec<(RouteDecision, Generation)>, PipelineError> {
        let decisions = requests
            .iter()
            .map(|(text, _)| self.route(text))
            .collect::<Result<Vec<_>, _>>()?;
        let mut results: Vec<Option<Generation>> = vec![None; requests.len()];
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, d) in decisions.iter().enumerate() {
            match groups.iter_mut().find(|(c, _)| *c == d.candidate) {
                Some((_, members)) => members.push(i),
                None => groups.push((d.candidate, vec![i])),
            }
        }
        for (_, members) in groups {
            let prompts: Vec<Vec<u32>> = members.iter().map(|&i| requests[i].1.clone()).collect();
            let set = &decisions[members[0]].set;
            let generations = self
                .lm
                .generate_batch(&prompts, set, config)
                .map_err(|e| PipelineError::Model(e.to_string()))?;
            if generations.len() != members.len() {
                return Err(PipelineError::Model(format!(
                    "generate_batch returned {} generations for {} prompts",
                    generations.len(),
                    members.len()
                )));
            }
            for (i, g) in members.into_iter().zip(generations) {
                results[i] = Some(g);
            }
        }
        let generations = results
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| PipelineError::Model("a batch returned fewer generations".into()))?;
        Ok(decisions.into_iter().zip(generations).collect())
    }
}
