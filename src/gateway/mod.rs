//! The link from ocaas to each instance's gateway over the gateway's own protocol: the device
//! identity ocaas holds per instance (created on first use, its Ed25519 seed and the gateway's
//! device token stored sealed), and the one connection this process keeps to it
//! (`runtime::gateway::Hub`, which pairs headlessly when asked and reconnects by itself).

pub mod repo;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::instances::repo::InstanceRow;
use crate::runtime::gateway::{Connection, Device, Hub, Target, Unavailable};
use crate::secrets::SecretKey;
use crate::state::{Activity, AppState, Drivers};

/// What reaching a gateway takes: the process's connections, and the stored identity.
#[derive(Clone)]
pub struct Link {
    pub hub: Arc<Hub>,
    db: PgPool,
    key: SecretKey,
    activity: Arc<Activity>,
    drivers: Arc<Drivers>,
}

impl Link {
    pub fn of(state: &AppState) -> Self {
        Link {
            hub: state.gateways.clone(),
            db: state.db.clone(),
            key: state.settings.secret_key.clone(),
            activity: state.activity.clone(),
            drivers: state.drivers.clone(),
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
