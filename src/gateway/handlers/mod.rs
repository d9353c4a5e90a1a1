//! HTTP handlers of the agent API (`/api/instances/{instanceId}/…`): thin, the logic is in the
//! domain's modules.

pub mod agent;
pub mod channels;
pub mod work;
