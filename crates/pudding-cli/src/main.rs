//! `pudding`: fetch a model, generate with blocks skipped or routed, evaluate, search
//! candidates, train routers, benchmark (`pudding --help`; the subcommands live in `cli/`).

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run(cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
