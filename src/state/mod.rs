//! The shared state every handler and background task reads: the database pool, settings,
//! the container runtime and the in-process registries. It sits at the bottom of the crate:
//! it imports only `config`, `db`, `error`, `metrics`, `ratelimit` and `runtime`, so any domain may depend on it.

mod activity;
mod cancels;
mod credentials;
mod drivers;
mod events;
mod keyed_locks;
mod slots;
mod ttl_cache;
mod user_views;
mod watch;

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use crate::ratelimit::{Counts, Held};
pub use activity::{Activity, Busy, Call};
pub use cancels::{ABORT_CHANNEL, Cancels, Registered};
pub use credentials::{Cached, Credentials, credentials_revoked};
pub use drivers::{DriverHold, Drivers};
pub use events::EventHub;
pub use keyed_locks::KeyedLocks;
pub use slots::{Slot, SlotKind, UserSlots};
pub use ttl_cache::TtlCache;
pub use user_views::{CachedJson, UserViews, follow, user_data_written};

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::ratelimit::AuthLimits;
use crate::runtime::Runtime;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub settings: Arc<Settings>,
    pub runtime: Arc<dyn Runtime>,
    /// Names this database's containers on a shared engine (label `ocaas.deployment`).
    pub deployment_id: Uuid,
    /// The lifecycle work running in this process, one per instance.
    pub drivers: Arc<Drivers>,
    /// Use of each instance seen by this process (the idle policy reads it).
    pub activity: Arc<Activity>,
    /// Who keys and sessions belong to, cached (see `credentials`).
    pub credentials: Arc<Credentials>,
    /// Each user's instance list, cached (see `user_views`).
    pub instance_lists: Arc<UserViews>,
    /// Each user's account answer (API keys), cached (see `user_views`).
    pub accounts: Arc<UserViews>,
    /// Woken when a create took a sandbox from the warm pool.
    pub pool_refill: Arc<tokio::sync::Notify>,
    /// Fan-out of chat event notifications within this process.
    pub chat_events: Arc<EventHub>,
    /// Fan-out of agent feed notifications (`ocaas_agent`) within this process.
    pub agent_events: Arc<EventHub>,
    pub metrics: Arc<Metrics>,
    /// Sign-in and registration attempts per address and per account.
    pub auth_limits: Arc<AuthLimits>,
    /// Long-lived work per user (commands, terminals, desktops, event streams).
    pub user_slots: Arc<UserSlots>,
    /// Chat turns running in this process, stoppable from any (`POST …/chat/abort`).
    pub turns: Arc<Cancels>,
    /// This process's connections to the instances' gateways (their WebSocket protocol).
    pub gateways: Arc<crate::runtime::gateway::Hub>,
    /// Where the model broker listens once it is bound (sandboxes are given its URL).
    pub broker_address: Arc<tokio::sync::watch::Sender<Option<std::net::SocketAddr>>>,
    /// Wakes this process's webhook deliverer (`webhooks::deliver`).
    pub webhook_wake: Arc<tokio::sync::Notify>,
    /// Cancelled when the server shuts down; background tasks watch it.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub async fn new(db: PgPool, settings: Settings, runtime: Arc<dyn Runtime>) -> anyhow::Result<Self> {
        let deployment_id = crate::db::deployment_id(&db).await?;
        let user_slots_limits = settings.user_limits;
        let drivers = Arc::new(Drivers::new(db.clone(), settings.instances.driver_lease));
        let shutdown = CancellationToken::new();
        let gateways = Arc::new(crate::runtime::gateway::Hub::new(runtime.clone(), shutdown.clone()));
        let auth_limits = Arc::new(AuthLimits::new(settings.auth_per_minute_per_addr, settings.login_per_minute_per_account));
        Ok(AppState {
            db,
            settings: Arc::new(settings),
            runtime,
            deployment_id,
            drivers,
            activity: Arc::default(),
            pool_refill: Arc::default(),
            credentials: Arc::default(),
            instance_lists: Arc::default(),
            accounts: Arc::default(),
            chat_events: Arc::default(),
            agent_events: Arc::default(),
            metrics: Arc::default(),
            auth_limits,
            user_slots: Arc::new(UserSlots::new(user_slots_limits)),
            broker_address: Arc::new(tokio::sync::watch::Sender::new(None)),
            gateways,
            turns: Arc::default(),
            webhook_wake: Arc::default(),
            shutdown,
        })
    }
}
