//! The `ocaas` command line: `serve`, `migrate`, `admin …` and `openapi`.

pub mod admin;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::app::{self, AppState};
use crate::config::{GlobalArgs, LogFormat, ServeArgs, Settings};
use crate::db::{self, ClusterUse, Database};
use crate::docs::spec;
use crate::runtime::{DockerRuntime, image};
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "ocaas", version, about = "Self-hosted OpenClaw as a Service")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (runs migrations first).
    Serve(ServeArgs),
    /// Run database migrations and exit.
    Migrate,
    /// Manage users, keys, invites and subscriptions.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Write the OpenAPI spec as `openapi.json` and `openapi.yaml` into a directory.
    Openapi {
        #[arg(long, default_value = "openapi")]
        out: PathBuf,
    },
}

pub async fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.global.log_format, matches!(cli.command, Command::Serve(_)));
    let result = match cli.command {
        Command::Serve(args) => serve(&cli.global, args).await,
        Command::Migrate => migrate(&cli.global).await,
        Command::Admin(command) => return admin::run(&cli.global, command).await,
        Command::Openapi { out } => write_openapi(&out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, verbose: bool) {
    let default = if verbose { "info,sqlx=warn" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OCAAS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

async fn serve(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let instance_args = args.instances.clone();
    let image = tokio::task::spawn_blocking(move || {
        image::resolve(instance_args.sandbox_image.as_deref(), &instance_args.image_build_script)
    })
    .await??;
    let settings = Settings::from_args(&args, image)?;
    let runtime = Arc::new(DockerRuntime::connect()?);
    let listener = TcpListener::bind(settings.bind).await.map_err(|e| anyhow::anyhow!("binding {}: {e}", settings.bind))?;
    let database = Database::open(global, ClusterUse::Server).await?;
    let result = async {
        db::migrate(&database.pool).await?;
        let state = AppState::new(database.pool.clone(), settings, runtime).await?;
        state.start_background_tasks();
        tracing::info!(address = %listener.local_addr()?, "ocaas listening");
        app::serve(listener, state, app::shutdown_signal()).await
    }
    .await;
    database.close().await;
    result
}

async fn migrate(global: &GlobalArgs) -> anyhow::Result<()> {
    let database = Database::open(global, ClusterUse::Command).await?;
    let result = db::migrate(&database.pool).await;
    database.close().await;
    result?;
    println!("migrations applied");
    Ok(())
}

fn write_openapi(out: &std::path::Path) -> anyhow::Result<()> {
    let spec = app::openapi();
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("openapi.json"), spec::to_json(&spec))?;
    std::fs::write(out.join("openapi.yaml"), spec::to_yaml(&spec))?;
    println!("wrote {}/openapi.json and openapi.yaml", out.display());
    Ok(())
}
