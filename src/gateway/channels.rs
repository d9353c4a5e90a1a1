//! The agent's messaging channels. Token channels (Telegram, Discord, Slack) are set by writing
//! the token into the gateway's configuration through the same safe patch as any change
//! (`config::patch`: schema-checked, on probation), and sealed on the server so ocaas can say
//! it is set without ever returning it. WhatsApp links by QR code (`web.login.start`/`wait`),
//! whose PNG the API passes on as a data URL. DM pairings are the gateway's
//! `channels.pairing.*`: strangers who wrote to the bot, let in or dismissed here.

use std::time::Duration;

use serde_json::{Value, json};

use super::models::{Channel, ChannelKind, ChannelTokens, Pairing, QrLogin};
use super::{Link, config, repo, rpc, wake};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::repo::InstanceRow;
use crate::runtime::disk::DiskSpec;

const MAX_TOKEN: usize = 512;
/// The largest QR image passed on (a WhatsApp QR PNG is a few KiB).
const MAX_QR: usize = 256 << 10;
const DM_POLICIES: [&str; 4] = ["pairing", "allowlist", "open", "disabled"];

pub async fn list(link: &Link, instance: &InstanceRow) -> AppResult<Vec<Channel>> {
    let status = wake::channel_status(link, instance, rpc::ANSWER_WAIT).await?;
    let stored = repo::channel_secret_kinds(&link.db, instance.id).await?;
    Ok(ChannelKind::ALL.iter().map(|kind| channel(&status, *kind, stored.iter().any(|k| k == kind.as_str()))).collect())
}

fn channel(status: &Value, kind: ChannelKind, token_set: bool) -> Channel {
    let name = kind.as_str();
    let summary = status.pointer(&format!("/channels/{name}")).unwrap_or(&Value::Null);
    let account = status.pointer(&format!("/channelAccounts/{name}/0")).unwrap_or(&Value::Null);
    let flag = |key: &str| summary.get(key).or_else(|| account.get(key)).and_then(Value::as_bool).unwrap_or(false);
    Channel {
        kind,
        label: status.pointer(&format!("/channelLabels/{name}")).and_then(Value::as_str).map(rpc::clean).unwrap_or_else(|| name.to_owned()),
        configured: flag("configured"),
        running: flag("running"),
        connected: flag("connected"),
        token_set,
        last_error: rpc::text(account, "lastError", 300).map(|e| rpc::clean(&e)),
    }
}

fn token(value: &str, field: &str) -> AppResult<String> {
    let ok = !value.is_empty() && value.len() <= MAX_TOKEN && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(AppError::new(ErrorCode::InvalidRequest, format!("`{field}` must be a token of 1 to 512 visible characters.")))
    }
}

/// Sets a token channel: the token goes into the gateway's configuration and, sealed, into
/// ocaas's database; neither is ever returned.
pub async fn set(link: &Link, disk: &DiskSpec, instance: &InstanceRow, kind: ChannelKind, tokens: &ChannelTokens) -> AppResult<Channel> {
    let policy = tokens.dm_policy.as_deref().unwrap_or("pairing");
    if !DM_POLICIES.contains(&policy) {
        return Err(AppError::new(ErrorCode::InvalidRequest, "`dm_policy` must be pairing, allowlist, open or disabled."));
    }
    let bot = token(&tokens.bot_token, "bot_token")?;
    let section = match kind {
        ChannelKind::Telegram => json!({"enabled": true, "botToken": bot, "dmPolicy": policy}),
        ChannelKind::Discord => json!({"enabled": true, "token": bot, "dmPolicy": policy}),
        ChannelKind::Slack => {
            let app = token(tokens.app_token.as_deref().unwrap_or_default(), "app_token")?;
            json!({"enabled": true, "mode": "socket", "botToken": bot, "appToken": app, "dmPolicy": policy})
        }
        ChannelKind::Whatsapp => {
            return Err(AppError::new(ErrorCode::InvalidRequest, "WhatsApp links with a QR code: POST …/channels/whatsapp/login."));
        }
    };
    if kind != ChannelKind::Slack && tokens.app_token.is_some() {
        return Err(AppError::new(ErrorCode::InvalidRequest, "Only Slack takes an `app_token`."));
    }
    let secret = serde_json::to_vec(&section).map_err(|e| AppError::Internal(e.into()))?;
    config::patch(link, disk, instance, &json!({"channels": {kind.as_str(): section}}), None).await?;
    repo::set_channel_secret(&link.db, instance.id, kind.as_str(), &link.key.seal(&secret)).await?;
    // One status read answers and tells the idle policy whether the channel now listens.
    let status = wake::channel_status(link, instance, rpc::ANSWER_WAIT).await?;
    Ok(channel(&status, kind, true))
}

/// Disconnects a channel: its configuration and stored secret removed, its session logged out.
pub async fn remove(link: &Link, disk: &DiskSpec, instance: &InstanceRow, kind: ChannelKind) -> AppResult<()> {
    if kind != ChannelKind::Whatsapp {
        config::patch(link, disk, instance, &json!({"channels": {kind.as_str(): null}}), None).await?;
        repo::delete_channel_secret(&link.db, instance.id, kind.as_str()).await?;
    }
    rpc::call(link, instance, "channels.logout", json!({"channel": kind.as_str()})).await?;
    after_change(link, instance).await;
    Ok(())
}

/// The idle policy learns at once whether a channel now listens.
async fn after_change(link: &Link, instance: &InstanceRow) {
    if let Err(error) = wake::channel_status(link, instance, std::time::Duration::from_secs(10)).await {
        tracing::debug!(error = %error.into_message(), "channels: refreshing the wake-up facts");
    }
}

/// Starts (or restarts, `force`) a QR login; the QR code to show.
pub async fn login_start(link: &Link, instance: &InstanceRow, kind: ChannelKind, force: bool) -> AppResult<QrLogin> {
    qr_only(kind)?;
    let answer = rpc::call(link, instance, "web.login.start", json!({"channel": kind.as_str(), "force": force})).await?;
    Ok(qr_login(&answer))
}

/// Waits up to `timeout` for the QR code to be scanned.
pub async fn login_wait(link: &Link, instance: &InstanceRow, kind: ChannelKind, timeout: Duration) -> AppResult<QrLogin> {
    qr_only(kind)?;
    let millis = timeout.as_millis() as u64;
    let answer =
        rpc::call_within(link, instance, "web.login.wait", json!({"channel": kind.as_str(), "timeoutMs": millis}), timeout + rpc::ANSWER_WAIT)
            .await?;
    let login = qr_login(&answer);
    if login.connected {
        after_change(link, instance).await;
    }
    Ok(login)
}

fn qr_only(kind: ChannelKind) -> AppResult<()> {
    if kind == ChannelKind::Whatsapp {
        Ok(())
    } else {
        Err(AppError::new(ErrorCode::InvalidRequest, "Only WhatsApp links with a QR code; the others take a token."))
    }
}

fn qr_login(answer: &Value) -> QrLogin {
    let qr = answer.get("qrDataUrl").and_then(Value::as_str).filter(|u| u.len() <= MAX_QR && u.starts_with("data:image/png;base64,"));
    QrLogin {
        connected: answer.get("connected").and_then(Value::as_bool).unwrap_or(false),
        message: rpc::text(answer, "message", 300).map(|m| rpc::clean(&m)).unwrap_or_default(),
        qr_data_url: qr.map(str::to_owned),
    }
}

pub async fn pairings(link: &Link, instance: &InstanceRow) -> AppResult<Vec<Pairing>> {
    let listed = rpc::call(link, instance, "channels.pairing.list", json!({})).await?;
    let requests = listed.get("requests").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    Ok(requests
        .iter()
        .take(200)
        .filter_map(|r| {
            Some(Pairing {
                id: rpc::text(r, "requestId", 128)?,
                channel: rpc::text(r, "channel", 64)?,
                sender_id: rpc::text(r, "senderId", 256).unwrap_or_default(),
                sender_label: rpc::text(r, "senderLabel", 256).map(|l| rpc::clean(&l)).unwrap_or_default(),
                expires_at: rpc::time_ms(r, "expiresAt"),
            })
        })
        .collect())
}

/// Lets the sender of a pending DM pairing in (`approve`) or dismisses the request.
pub async fn answer_pairing(link: &Link, instance: &InstanceRow, id: &str, approve: bool) -> AppResult<()> {
    let pending = pairings(link, instance).await?;
    let request = pending
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| AppError::new(ErrorCode::PairingNotFound, "No pending DM pairing request with that id."))?;
    let method = if approve { "channels.pairing.approve" } else { "channels.pairing.dismiss" };
    rpc::call(link, instance, method, json!({"channel": request.channel, "accountId": "default", "requestId": id})).await?;
    Ok(())
}
