//! Keeps the credential cache (`state::Credentials`) honest: listens for `ocaas_auth`
//! notifications (every revocation, expiry change and deletion of a key or session, from any
//! process), keeps the account answers (`AppState::accounts`) honest on `ocaas_accounts`, and
//! writes the `last_used_at` of keys served from the cache once a minute
//! (`Settings::key_touch_interval`).

use crate::db::notify::Listeners;
use crate::state::AppState;

pub const CHANNEL: &str = "ocaas_auth";
/// Sent with the user's id whenever a user or subscription row changes (the account answer).
pub const ACCOUNTS_CHANNEL: &str = "ocaas_accounts";

pub fn spawn(state: &AppState, listeners: &mut Listeners) {
    let (live, changed) = (state.credentials.clone(), state.credentials.clone());
    listeners.on(CHANNEL, move |on| live.set_live(on), move |_| changed.invalidate());
    crate::state::follow(&state.accounts, listeners, ACCOUNTS_CHANNEL);
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                () = tokio::time::sleep(state.settings.key_touch_interval) => {}
            }
            let used = state.credentials.take_used();
            if !used.is_empty()
                && let Err(error) = super::repo::touch_api_keys(&state.db, &used).await
            {
                tracing::warn!(%error, "writing keys' last use failed");
            }
        }
    });
}
