//! The `ocaas` command line: `serve`, `migrate`, `admin …` and `openapi`.

pub mod admin;
mod audit;
mod egress;
pub mod node;
mod nodes;
mod orgs;
pub mod setup;
mod storage;
mod upgrade;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::config::{GlobalArgs, LogFormat, ServeArgs, Settings};
use crate::db::{self, ClusterUse, Database};
use crate::docs::spec;
use crate::runtime::{DockerRuntime, image};
use crate::state::AppState;
use crate::{router, serve as server};
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
    Serve(Box<ServeArgs>),
    /// Serve this host's Docker engine to the API replicas (one per Docker host).
    Node(node::NodeArgs),
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
    /// Internal: checks `{"schema","config"}` from stdin, prints the problems (the server runs
    /// this confined, see `gateway::config`).
    #[command(hide = true)]
    CheckConfig,
}

pub async fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.global.log_format, matches!(cli.command, Command::Serve(_) | Command::Node(_)));
    let result = match cli.command {
        Command::Serve(args) => serve(&cli.global, *args).await,
        Command::Migrate => migrate(&cli.global).await,
        Command::Node(args) => node::run(args).await,
        Command::Admin(command) => return admin::run(&cli.global, command).await,
        Command::Openapi { out } => write_openapi(&out),
        Command::CheckConfig => crate::gateway::config::check_config_stdin(),
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("OCAAS_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

async fn serve(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let (global_args, serve_args) = (global.clone(), args.clone());
    let image = tokio::task::spawn_blocking(move || prepare(&global_args, &serve_args)).await??;
    let settings = settings(global, &args, image)?;
    // Multipart uploads are spooled under the data dir; what a crash left there goes now.
    let _ = std::fs::remove_dir_all(&settings.instances.spool_dir);
    std::fs::create_dir_all(&settings.instances.spool_dir)?;
    let docker: Arc<dyn crate::runtime::Runtime> = Arc::new(DockerRuntime::connect()?);
    let listener = TcpListener::bind(settings.bind).await.map_err(|e| anyhow::anyhow!("binding {}: {e}", settings.bind))?;
    let database = Database::open(global, ClusterUse::Server).await?;
    let result = async {
        db::migrate(&database.pool).await?;
        // Sandboxes on this host's engine, or on the node each was placed on (`nodes`).
        // Every registered node is known before the first request or reconcile pass.
        let fleet = crate::nodes::fleet_now(&database.pool, &settings.secret_key, docker).await?;
        let state = AppState::new(database.pool.clone(), settings, Arc::new(fleet.clone())).await?;
        crate::nodes::spawn(&state, fleet);
        server::start_background_tasks(&state);
        tracing::info!(address = %listener.local_addr()?, "ocaas listening");
        server::serve(listener, state, server::shutdown_signal()).await
    }
    .await;
    database.close().await;
    result
}

/// Installs what is missing and resolves the sandbox image (building the offline one if needed).
/// With `OCAAS_SANDBOX_IMAGE` set nothing of the offline build is touched.
fn prepare(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<String> {
    let instances = &args.instances;
    let configured = instances.sandbox_image.as_deref().map(str::trim).filter(|image| !image.is_empty());
    let script = match (configured, &instances.image_build_script) {
        (Some(_), _) => None,
        (None, Some(script)) => Some(script.clone()),
        (None, None) => Some(image::write_embedded_build_context(&global.data_dir.join("image-build"))?),
    };
    let image_build = script.as_deref().is_some_and(|script| !image::offline_image_exists(script));
    let wanted =
        setup::Wanted { embedded_postgres: global.database_url.is_none(), image_build, novnc_dir: &args.novnc_dir, xterm_dir: &args.xterm_dir };
    setup::ensure(&setup::needs(&wanted), args.auto_install)?;
    match script {
        Some(script) => image::resolve(None, &script),
        None => Ok(configured.unwrap_or_default().to_owned()),
    }
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
    let spec = router::openapi();
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("openapi.json"), spec::to_json(&spec))?;
    std::fs::write(out.join("openapi.yaml"), spec::to_yaml(&spec))?;
    println!("wrote {}/openapi.json and openapi.yaml", out.display());
    Ok(())
}

/// The key in `OCAAS_DATA_DIR/secret.key`, created on first start.
/// The one way every command builds its settings: `serve`'s flags (or, for the other
/// commands, the environment alone: `Settings::args_from_env`), with the data dir's places and
/// its secret key. No command runs on defaults the operator did not choose.
pub fn settings(global: &GlobalArgs, args: &ServeArgs, image: String) -> anyhow::Result<Settings> {
    let mut settings = Settings::from_args(args, image)?;
    std::fs::create_dir_all(&global.data_dir)?;
    let data_dir = std::fs::canonicalize(&global.data_dir)?;
    if args.secret_key.is_none() {
        settings.secret_key = server_secret_key(&data_dir)?;
    }
    settings.instances.spool_dir = data_dir.join("spool");
    settings.instances.disk_root = data_dir.join("instances");
    settings.snapshots.root = data_dir.join("snapshots");
    Ok(settings)
}

fn server_secret_key(data_dir: &std::path::Path) -> anyhow::Result<crate::secrets::SecretKey> {
    crate::secrets::SecretKey::load_or_create(&data_dir.join("secret.key"))
}
