//! ocaas's client of the OpenClaw gateway's own WebSocket protocol (v4): one connection per
//! running instance (`hub`), its frames (`frames`), the device identity that gets it its
//! scopes from off the sandbox's loopback (`device`), and the connection itself (`conn`).
//! docs/gateway-protocol.md holds what the protocol is and where each fact comes from.

pub mod conn;
pub mod device;
pub mod frames;
pub mod hub;
pub mod notice;
#[cfg(test)]
mod replay;

pub use conn::{Connection, history};
pub use device::Device;
pub use hub::{Hub, Target, Unavailable};
pub use notice::{Notice, NoticeKind};

use tokio::sync::mpsc;
use uuid::Uuid;

/// What a run's reader gets.
#[derive(Debug)]
pub enum RunEvent {
    /// A piece of the answer (`chat` `delta`'s `deltaText`).
    Delta(String),
    /// A tool step (`agent` `stream:"tool"`: start, update, result).
    Tool(frames::ToolData),
    /// The run is over; the final message's text when it was sent.
    Final(Option<String>),
    Aborted(Option<String>),
    Failed(String),
}

impl RunEvent {
    pub fn ends_run(&self) -> bool {
        matches!(self, RunEvent::Final(_) | RunEvent::Aborted(_) | RunEvent::Failed(_))
    }
}

/// What the importer gets: events of runs nobody in this process asked for (turns made on the
/// gateway's own UI, its channels, its schedules, or by another replica), and "look again".
#[derive(Debug)]
pub enum Foreign {
    Chat {
        instance_id: Uuid,
        session_key: String,
        run_id: String,
        text: String,
        ended: bool,
    },
    /// Events may have been lost (a reconnect, a `seq` gap, a full queue): reload from history.
    Resync {
        instance_id: Uuid,
    },
}

/// Where a connection sends what no run of its own asked for.
#[derive(Clone)]
pub struct Sinks {
    pub foreign: mpsc::Sender<Foreign>,
    pub notices: mpsc::Sender<Notice>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The gateway does not speak this protocol (upgrade refused, other version): use HTTP.
    #[error("the gateway does not speak WebSocket protocol v4: {0}")]
    NoProtocol(String),
    #[error("the gateway could not be reached: {0}")]
    Unreachable(String),
    #[error("the gateway refused the connection: {} ({})", .0.message, .0.code)]
    Rejected(frames::ErrorShape),
    #[error("the gateway has not paired ocaas's device yet (request {request_id})")]
    NotPaired { request_id: String },
    #[error("the gateway granted only {0:?}")]
    ScopesCleared(Vec<String>),
    #[error("the gateway broke the protocol: {0}")]
    Protocol(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("the gateway answered {}: {}", .0.code, .0.message)]
    Gateway(frames::ErrorShape),
    #[error("the gateway connection closed")]
    Closed,
    #[error("the gateway did not answer in time")]
    Timeout,
    #[error("too many requests in flight to the gateway")]
    Busy,
    #[error("the gateway sent an unreadable answer: {0}")]
    Malformed(String),
}
