"""The stand-in gateway's operator methods over WebSocket, as openclaw 2026.9.6 documents them:
configuration (`config.get`, `config.schema`, `config.patch`), channels (`channels.status`,
`channels.logout`, `web.login.start`/`wait` with a QR as a PNG data URL), DM pairing
(`channels.pairing.list`/`approve`/`dismiss`) and exec approvals (`exec.approval.resolve`; the
request is made by a tool step in gateway_runs.py).

Secrets in `config.get` are `__OPENCLAW_REDACTED__`; a patch that sends the sentinel back keeps
the stored value. A patch is a JSON merge patch (`null` deletes) checked against the config
schema; a change under `gateway` restarts the gateway in place (exec, same pid), anything else
is applied hot. Test controls (the `openclaw standin …` CLI): an inbound DM from an unknown
sender (a pairing request), and the WhatsApp QR "scanned".
"""
import base64
import hashlib
import json
import os
import struct
import sys
import threading
import time
import uuid
import zlib

import jsonschema
import qrcode

import gateway_state as state

REDACTED = "__OPENCLAW_REDACTED__"
SENSITIVE = {"token", "botToken", "appToken", "apiKey", "password", "signingSecret"}
SOCKET_CHANNELS = ("telegram", "discord", "slack", "whatsapp")
LABELS = {"telegram": "Telegram", "discord": "Discord", "slack": "Slack", "whatsapp": "WhatsApp"}
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openclaw-config.schema.json")

approvals = {}
approvals_lock = threading.Lock()
login = {"qr": None, "started": 0}


class BadRequest(Exception):
    pass


def config_path():
    return os.environ.get("OPENCLAW_CONFIG_PATH") or os.path.join(os.path.expanduser("~/.openclaw"), "openclaw.json")


def schema():
    with open(SCHEMA_PATH, encoding="utf-8") as source:
        return json.load(source)


def problems(config):
    """The schema's complaints about `config`, as the gateway's `issues` (path, message)."""
    validator = jsonschema.Draft202012Validator(schema())
    return [{"path": ".".join(str(p) for p in e.absolute_path) or "<root>", "message": e.message[:300]}
            for e in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))][:20]


def read_config():
    """(config, raw bytes) of openclaw.json."""
    try:
        with open(config_path(), "rb") as source:
            raw = source.read()
        return json.loads(raw), raw
    except (OSError, ValueError):
        return {}, b""


def digest(raw):
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def redact(value):
    if isinstance(value, dict):
        return {k: (REDACTED if k in SENSITIVE and isinstance(v, str) and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def merge(target, patch, current):
    """RFC 7386 merge patch; the redaction sentinel keeps what `current` has at that key."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        existing = current.get(key) if isinstance(current, dict) else None
        if value is None:
            out.pop(key, None)
        elif value == REDACTED:
            if existing is None:
                raise BadRequest(f"{key}: the redaction sentinel names no stored value")
            out[key] = existing
        else:
            out[key] = merge(out.get(key), value, existing)
    return out


def write_config(config):
    path = config_path()
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(config, out, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def restart_soon(delay_ms):
    """The in-process restart the gateway does for a `gateway.*` change (no respawn: same pid)."""
    def again():
        time.sleep(delay_ms / 1000)
        print("[gateway] configuration changed: restarting", flush=True)
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable] + sys.argv)
    threading.Thread(target=again, daemon=True).start()


# -- channels ----------------------------------------------------------------------------------
def channel_state():
    """Per channel: configured, running, connected, as the gateway's channel runtime sees them."""
    config, _ = read_config()
    channels = config.get("channels") or {}
    linked = os.path.exists(os.path.join(state_dir(), "whatsapp", "creds.json"))
    out = {}
    for name in SOCKET_CHANNELS:
        entry = channels.get(name) or {}
        if name == "whatsapp":
            configured = linked
        elif name == "slack":
            configured = bool(entry.get("botToken") and entry.get("appToken"))
        else:
            configured = bool(entry.get("token" if name == "discord" else "botToken"))
        enabled = entry.get("enabled", True) is not False
        token = entry.get("token" if name == "discord" else "botToken", "") or ""
        bad = isinstance(token, str) and token.startswith("bad")
        running = configured and enabled
        account = {"accountId": "default", "enabled": enabled, "configured": configured, "running": running,
                   "connected": running and not bad, "mode": "polling" if name == "telegram" else "socket"}
        if bad and running:
            account["lastError"] = "401 Unauthorized: the bot token was refused"
        out[name] = account
    return out


def state_dir():
    return os.path.dirname(state.devices_dir())


def png(matrix, scale=8, border=4):
    """A black-on-white PNG of a module matrix (no image library in the sandbox)."""
    size = (len(matrix) + 2 * border) * scale
    rows = []
    for y in range(size):
        my = y // scale - border
        line = bytearray([0])
        for x in range(size):
            mx = x // scale - border
            dark = 0 <= my < len(matrix) and 0 <= mx < len(matrix) and matrix[my][mx]
            line.append(0 if dark else 255)
        rows.append(bytes(line))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def new_qr():
    code = qrcode.QRCode(border=0)
    code.add_data(f"2@{uuid.uuid4().hex},{base64.b64encode(os.urandom(24)).decode()}")
    code.make(fit=True)
    return "data:image/png;base64," + base64.b64encode(png(code.get_matrix())).decode()


def scanned():
    marker = os.path.join(state_dir(), "standin-whatsapp-scanned")
    if os.path.exists(marker):
        os.makedirs(os.path.join(state_dir(), "whatsapp"), exist_ok=True)
        with open(os.path.join(state_dir(), "whatsapp", "creds.json"), "w", encoding="utf-8") as out:
            json.dump({"linkedAt": state.now_ms()}, out)
        os.remove(marker)
        return True
    return os.path.exists(os.path.join(state_dir(), "whatsapp", "creds.json"))


# -- DM pairing --------------------------------------------------------------------------------
def pairing_file():
    return os.path.join(state_dir(), "pairing", "requests.json")


def pairing_requests():
    try:
        with open(pairing_file(), encoding="utf-8") as source:
            return json.load(source)
    except (OSError, ValueError):
        return []


def save_pairing(requests):
    os.makedirs(os.path.dirname(pairing_file()), exist_ok=True)
    with open(pairing_file(), "w", encoding="utf-8") as out:
        json.dump(requests, out)


def inbound_dm(channel, sender, label):
    """An unknown sender writes to the bot: under dmPolicy `pairing` a request with a code."""
    requests = pairing_requests()
    now = state.now_ms()
    request = {"requestId": uuid.uuid4().hex[:12], "channel": channel, "accountId": "default", "senderId": sender,
               "senderLabel": label, "code": uuid.uuid4().hex[:8].upper(), "createdAt": now, "lastSeenAt": now,
               "expiresAt": now + 3600_000}
    save_pairing([r for r in requests if r["senderId"] != sender or r["channel"] != channel] + [request])
    return request


def approve_sender(channel, sender):
    config, _ = read_config()
    entry = config.setdefault("channels", {}).setdefault(channel, {})
    allow = entry.setdefault("allowFrom", [])
    if sender not in allow:
        allow.append(sender)
    write_config(config)


# -- the methods -------------------------------------------------------------------------------
def call(conn, rid, method, params):
    if method == "config.get":
        config, raw = read_config()
        shown = redact(config)
        return conn.reply(rid, {"path": config_path(), "exists": bool(raw), "raw": json.dumps(shown, indent=2), "config": shown,
                                "hash": digest(raw), "valid": not problems(config), "issues": problems(config), "warnings": []})
    if method == "config.schema":
        # Test control: a hostile agent serving a schema of its own choosing.
        override = os.path.join(state_dir(), "standin-schema.json")
        served = json.load(open(override, encoding="utf-8")) if os.path.exists(override) else schema()
        return conn.reply(rid, {"schema": served, "uiHints": {k: {"sensitive": True} for k in ("channels.telegram.botToken", "channels.discord.token",
                                "channels.slack.botToken", "channels.slack.appToken", "gateway.auth.token", "models.providers.*.apiKey")},
                                "version": "2026.9.6-standin", "generatedAt": "2026-09-23T00:00:00Z"})
    if method in ("config.patch", "config.apply"):
        raw_text, base = params.get("raw"), params.get("baseHash")
        if not isinstance(raw_text, str):
            raise BadRequest("raw must be a JSON5 string")
        try:
            patch = json.loads(raw_text)
        except ValueError as error:
            raise BadRequest(f"raw is not valid JSON5: {error}")
        if not isinstance(patch, dict):
            raise BadRequest("raw must be an object")
        current, raw = read_config()
        if raw and base != digest(raw):
            raise BadRequest("config changed since last load; re-run config.get and retry")
        updated = merge(current if method == "config.patch" else {}, patch, current)
        issues = problems(updated)
        if issues:
            return conn.reply(rid, error={"code": "INVALID_REQUEST", "message": "invalid config: " + "; ".join(f"{i['path']}: {i['message']}" for i in issues[:5]),
                                          "details": {"issues": issues}})
        write_config(updated)
        restart = (current.get("gateway") or {}) != (updated.get("gateway") or {})
        if restart:
            restart_soon(300)
        return conn.reply(rid, {"ok": True, "path": config_path(), "config": redact(updated),
                                "restart": {"scheduled": restart, "delayMs": 300 if restart else 0}})
    if method == "channels.status":
        channels = channel_state()
        return conn.reply(rid, {"ts": state.now_ms(), "channelOrder": list(SOCKET_CHANNELS), "channelLabels": LABELS,
                                "channels": {k: {kk: v[kk] for kk in ("configured", "running", "connected")} for k, v in channels.items()},
                                "channelAccounts": {k: [v] for k, v in channels.items()}, "channelDefaultAccountId": {k: "default" for k in channels}})
    if method == "channels.logout":
        channel = params.get("channel")
        if channel not in SOCKET_CHANNELS:
            raise BadRequest("unknown channel")
        creds = os.path.join(state_dir(), "whatsapp", "creds.json")
        cleared = channel == "whatsapp" and os.path.exists(creds)
        if cleared:
            os.remove(creds)
        return conn.reply(rid, {"channel": channel, "accountId": "default", "cleared": cleared})
    if method == "web.login.start":
        if scanned() and not params.get("force"):
            return conn.reply(rid, {"message": "WhatsApp is already linked.", "connected": True})
        login.update(qr=new_qr(), started=state.now_ms())
        return conn.reply(rid, {"message": "Scan this QR code in WhatsApp → Linked devices.", "qrDataUrl": login["qr"]})
    if method == "web.login.wait":
        timeout = min(max(int(params.get("timeoutMs") or 1000), 0), 30_000) / 1000
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not scanned():
            time.sleep(0.2)
        if scanned():
            return conn.reply(rid, {"connected": True, "message": "Linked."})
        return conn.reply(rid, {"connected": False, "message": "Waiting for the QR code to be scanned.", "qrDataUrl": login["qr"]})
    if method == "channels.pairing.list":
        wanted = params.get("channel")
        rows = [{k: v for k, v in r.items() if k != "code"} for r in pairing_requests() if wanted in (None, r["channel"]) and r["expiresAt"] > state.now_ms()]
        return conn.reply(rid, {"accounts": [], "requests": rows, "commandOwnerConfigured": False, "limits": {"pendingPerAccount": 3, "ttlMs": 3600_000}})
    if method in ("channels.pairing.approve", "channels.pairing.dismiss"):
        requests = pairing_requests()
        hit = next((r for r in requests if r["requestId"] == params.get("requestId") and r["channel"] == params.get("channel")), None)
        if hit is None:
            return conn.reply(rid, error={"code": "INVALID_REQUEST", "message": "unknown or expired pairing request"})
        save_pairing([r for r in requests if r is not hit])
        if method == "channels.pairing.approve":
            approve_sender(hit["channel"], hit["senderId"])
            print(f"[gateway] {hit['channel']} pairing approved for {hit['senderId']}", flush=True)
        return conn.reply(rid, {"ok": True, "requestId": hit["requestId"], "senderId": hit["senderId"]})
    if method == "exec.approval.resolve":
        decision = params.get("decision")
        if decision not in ("allow-once", "allow-always", "deny"):
            raise BadRequest("decision must be allow-once, allow-always or deny")
        with approvals_lock:
            pending = approvals.get(params.get("id"))
        if pending is None:
            return conn.reply(rid, error={"code": "APPROVAL_NOT_FOUND", "message": "unknown or expired approval id"})
        pending["decision"] = decision
        pending["event"].set()
        return conn.reply(rid, {"ok": True})
    raise BadRequest(f"unknown method: {method}")


def ask_approval(ws, command, session_key):
    """Asks the operators whether `command` may run; the decision, or "deny" on expiry."""
    config, _ = read_config()
    policy = ((config.get("tools") or {}).get("exec") or {})
    security, ask = policy.get("security", "full"), policy.get("ask", "off")
    if security == "deny":
        return "deny"
    if ask != "always":
        return "allow-once"
    approval_id = str(uuid.uuid4())
    entry = {"event": threading.Event(), "decision": None}
    with approvals_lock:
        approvals[approval_id] = entry
    now = state.now_ms()
    request = {"command": command, "commandPreview": command[:200], "cwd": "/workspace", "host": "gateway", "security": security, "ask": ask,
               "allowedDecisions": ["allow-once", "allow-always", "deny"], "agentId": "main", "sessionKey": session_key}
    ws.broadcast("exec.approval.requested", {"id": approval_id, "request": request, "createdAtMs": now, "expiresAtMs": now + 120_000},
                 scope="operator.approvals")
    entry["event"].wait(120)
    with approvals_lock:
        approvals.pop(approval_id, None)
    decision = entry["decision"] or "deny"
    ws.broadcast("exec.approval.resolved", {"id": approval_id, "decision": decision, "resolvedBy": "operator", "ts": state.now_ms(),
                                            "request": request}, scope="operator.approvals")
    return decision


def lint():
    """`openclaw doctor --lint --json`: what is wrong or risky in the configuration."""
    config, raw = read_config()
    findings = [{"checkId": "config.schema", "severity": "error", "message": f"{i['path']}: {i['message']}", "path": i["path"]} for i in problems(config)]
    if not raw:
        findings.append({"checkId": "config.missing", "severity": "error", "message": "openclaw.json is missing"})
    for name, entry in ((config.get("channels") or {}).items()):
        if isinstance(entry, dict) and entry.get("dmPolicy") == "open" and "*" not in (entry.get("allowFrom") or []):
            findings.append({"checkId": "channels.dm-open", "severity": "warn", "path": f"channels.{name}.dmPolicy",
                             "message": f"{name}: dmPolicy \"open\" needs allowFrom [\"*\"]", "fixHint": "use \"pairing\""})
    exec_policy = ((config.get("tools") or {}).get("exec") or {})
    if exec_policy.get("security", "full") == "full" and exec_policy.get("ask", "off") == "off":
        findings.append({"checkId": "tools.exec.unattended", "severity": "info", "path": "tools.exec",
                         "message": "exec runs without approval (security full, ask off)"})
    return {"ok": not any(f["severity"] == "error" for f in findings), "checksRun": 4, "checksSkipped": 0, "findings": findings}

