//! The instance's agent as its gateway runs it. The link: the device identity ocaas holds per
//! instance (created on first use, its Ed25519 seed and the gateway's device token stored
//! sealed), and the one connection this process keeps to it (`runtime::gateway::Hub`, which
//! pairs headlessly when asked and reconnects by itself). Over it, the always-on agent: its
//! configuration changed safely (`config`, `guard`), its channels and DM pairings
//! (`channels`), schedules (`schedules`, and `wake` for the idle policy), approval requests and
//! tool policy (`approvals`, `notices`), the gateway's restart and doctor (`ops`), and the
//! instance's agent feed (`feed`).

pub mod approvals;
pub mod channels;
pub mod config;
pub mod feed;
pub mod guard;
pub mod handlers;
pub mod models;
pub mod notices;
pub mod ops;
pub mod repo;
pub mod rpc;
pub mod schedules;
pub mod wake;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::instances::repo::InstanceRow;
use crate::runtime::gateway::{Connection, Device, Hub, Target, Unavailable};
use crate::secrets::SecretKey;
use crate::state::{Activity, AppState, Drivers};

/// The agent API's routes.
pub fn router() -> OpenApiRouter<AppState> {
    use handlers::{agent, channels as ch, work};
    OpenApiRouter::new()
        .routes(routes!(agent::status))
        .routes(routes!(agent::events))
        .routes(routes!(agent::get_config, agent::patch_config))
        .routes(routes!(agent::config_schema))
        .routes(routes!(agent::restart))
        .routes(routes!(agent::doctor))
        .routes(routes!(ch::list))
        .routes(routes!(ch::set, ch::remove))
        .routes(routes!(ch::login, ch::login_wait))
        .routes(routes!(ch::pairings))
        .routes(routes!(ch::answer_pairing))
        .routes(routes!(work::list_schedules, work::create_schedule))
        .routes(routes!(work::update_schedule, work::delete_schedule))
        .routes(routes!(work::run_schedule))
        .routes(routes!(work::schedule_runs))
        .routes(routes!(work::list_approvals))
        .routes(routes!(work::resolve_approval))
        .routes(routes!(work::get_tool_policy, work::set_tool_policy))
}

/// The agent's background work: approvals and runs heard from the gateways, configurations on
/// probation, schedules' wake-ups.
pub fn spawn(state: &AppState) {
    if state.settings.gateway_protocol == crate::config::GatewayProtocol::Http {
        return;
    }
    notices::spawn(state);
    guard::spawn(state);
    wake::spawn(state);
}

/// What reaching a gateway takes: the process's connections, and the stored identity.
#[derive(Clone)]
pub struct Link {
    pub hub: Arc<Hub>,
    /// Where the instance's files are read (this host, or its node).
    pub runtime: Arc<dyn crate::runtime::Runtime>,
    db: PgPool,
    key: SecretKey,
    activity: Arc<Activity>,
    drivers: Arc<Drivers>,
    /// The `ocaas` binary that checks configurations confined (`config::check`).
    helper: Arc<std::path::Path>,
}

impl Link {
    pub fn of(state: &AppState) -> Self {
        Link {
            hub: state.gateways.clone(),
            runtime: state.runtime.clone(),
            db: state.db.clone(),
            key: state.settings.secret_key.clone(),
            activity: state.activity.clone(),
            drivers: state.drivers.clone(),
            helper: state.settings.helper_exe.clone().into(),
        }
    }

    /// The instance's gateway connection; `Unavailable::NoProtocol` means "use HTTP".
    pub async fn connection(&self, instance: &InstanceRow, wait: Duration) -> Result<Arc<Connection>, Unavailable> {
        self.hub.connection(instance.id, wait, || self.target(instance)).await
    }

    async fn target(&self, instance: &InstanceRow) -> Result<Target, String> {
        target(&self.db, &self.key, &self.activity, &self.drivers, instance).await
    }
}

async fn target(db: &PgPool, key: &SecretKey, activity: &Arc<Activity>, drivers: &Arc<Drivers>, instance: &InstanceRow) -> Result<Target, String> {
    let stored = match repo::device(db, instance.id).await.map_err(|e| e.to_string())? {
        Some(row) => row,
        None => {
            let device = Device::generate();
            repo::insert_device(db, instance.id, &device.id(), &key.seal(&device.seed())).await.map_err(|e| e.to_string())?
        }
    };
    // A seed sealed with another server key cannot be opened: the gateway then sees a new
    // device, and pairing it again is the repair.
    let device = key.open(&stored.seed_sealed).and_then(|seed| Device::from_seed(&seed)).unwrap_or_else(Device::generate);
    let known = stored.device_token_sealed.as_deref().and_then(|sealed| key.open(sealed));
    let (db, key, instance_id, activity, drivers) = (db.clone(), key.clone(), instance.id, activity.clone(), drivers.clone());
    let known = std::sync::Mutex::new(known);
    let on_connected = Box::new(move |token: Option<String>| {
        let Some(token) = token else { return };
        let mut known = known.lock().expect("device token");
        if known.as_deref() == Some(token.as_bytes()) {
            return;
        }
        *known = Some(token.clone().into_bytes());
        let (db, sealed) = (db.clone(), key.seal(token.as_bytes()));
        tokio::spawn(async move {
            if let Err(error) = repo::set_device_token(&db, instance_id, &sealed).await {
                tracing::warn!(%error, instance = %instance_id, "storing the gateway's device token");
            }
        });
    });
    Ok(Target {
        instance_id: instance.id,
        sandbox: instance.sandbox_id.clone(),
        token: instance.gateway_token.clone(),
        device: Arc::new(device),
        on_connected,
        // The pairing command runs only while no lifecycle operation does (in any process: the
        // driver lease), and counts as a call (a pause here waits for it): an exec racing a
        // pause can wedge the container in the engine.
        exec_guard: Box::new(move || {
            let (activity, drivers) = (activity.clone(), drivers.clone());
            Box::pin(async move {
                let hold = drivers.try_hold(instance_id).await?;
                Some(Box::new((hold, activity.call(instance_id).await)) as Box<dyn Send>)
            })
        }),
    })
}
