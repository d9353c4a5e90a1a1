//! The `ocaas` binary: parses the command line and hands over to `ocaas::cli`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ocaas::cli::run(ocaas::cli::Cli::parse()).await
}
