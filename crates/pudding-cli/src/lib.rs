//! Shared plumbing of the `pudding` CLI and the examples: backend choice, model
//! resolution (a local path, or the fetched default), and the subcommands' logic.

pub mod backend;
pub mod commands;
pub mod e2e_report;
pub mod export_command;
pub mod reproduce;
pub mod router_commands;
pub mod shape_bench;
pub mod shard_commands;
pub mod sharding;

/// Every binary built on this crate (the CLI, the examples, their tests) counts allocations,
/// so chat templates render under their memory budget (`pudding_models::chat`).
#[global_allocator]
static ALLOCATOR: pudding_core::memory::BudgetedAllocator = pudding_core::memory::BudgetedAllocator;

use pudding_models::assets::{ensure_asset, KNOWN_ASSETS, SMOLLM2_135M_INSTRUCT};
use pudding_models::ModelError;
use std::path::PathBuf;

/// The model to use: `path` when given (a file or directory; or the name of a known asset,
/// e.g. `qwen2.5-coder-0.5b-instruct`, when no such path exists), else the embedded
/// default (SmolLM2-135M-Instruct). Known assets are fetched into the cache on first use.
pub fn resolve_model(path: Option<PathBuf>) -> Result<PathBuf, ModelError> {
    match path {
        Some(p) => {
            if !p.exists() {
                if let Some(asset) = KNOWN_ASSETS.iter().find(|a| p.as_os_str() == a.name) {
                    return ensure_asset(asset);
                }
                return Err(ModelError::Io {
                    path: p.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such model file or directory, and not a known asset name (`pudding fetch --list`)",
                    ),
                });
            }
            Ok(p)
        }
        None => ensure_asset(&SMOLLM2_135M_INSTRUCT),
    }
}
