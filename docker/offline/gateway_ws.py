"""The stand-in gateway's WebSocket door: protocol v4 as captured (70-73) and documented.

`connect.challenge` -> `connect` -> `hello-ok`; `chat.send` answers `{runId, status}` and the run
streams `chat` (status, delta, final | aborted | error) and `agent` events (run_status, lifecycle,
assistant, tool, item, command_output, usage), each numbered per connection by the outer `seq`.
`tool` events go only to connections that declared `caps:["tool-events"]` and asked for the run.
`chat.history`, `chat.abort`, `sessions.list`, `health` as documented.

The loopback rule: a client that is not on loopback keeps its scopes only with a device identity
(Ed25519, signing the v3 payload) that has been paired; an unpaired one gets NOT_PAIRED with a
requestId and close 1008 until `openclaw devices approve <requestId>` runs inside the sandbox.
"""
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import threading
import time
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import gateway_admin
import gateway_cron
import gateway_runs
import gateway_state as state

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PRE_HANDSHAKE_MAX = 64 * 1024
MAX_PAYLOAD = 25 * 1024 * 1024
TICK_MS = int(os.environ.get("OPENCLAW_STANDIN_TICK_MS", "30000"))
SKEW_MS = 120_000
CHAT_METHODS = ["health", "chat.send", "chat.history", "chat.abort", "sessions.list"]
ADMIN_METHODS = ["config.get", "config.schema", "config.patch", "config.apply", "channels.status", "channels.logout",
                 "channels.pairing.list", "channels.pairing.approve", "channels.pairing.dismiss", "exec.approval.resolve"]
CRON_METHODS = ["cron.list", "cron.status", "cron.add", "cron.update", "cron.remove", "cron.run", "cron.runs"]
# web.login.* are served but, like the real gateway's, left out of the advertised list.
HIDDEN_METHODS = ["web.login.start", "web.login.wait"]
METHODS = CHAT_METHODS + ADMIN_METHODS + CRON_METHODS
EVENTS = ["connect.challenge", "agent", "chat", "health", "tick", "shutdown", "cron", "exec.approval.requested", "exec.approval.resolved"]
READ = {"operator.read", "operator.write", "operator.admin"}
WRITE = {"operator.write", "operator.admin"}
ADMIN = {"operator.admin"}
APPROVALS = {"operator.approvals", "operator.admin"}
PAIRING = {"operator.pairing", "operator.admin"}
# The scope each method needs (the gateway's method descriptors); unlisted ones need read.
NEEDS = {"chat.send": WRITE, "chat.abort": WRITE, "config.patch": ADMIN, "config.apply": ADMIN, "channels.logout": ADMIN,
         "web.login.start": ADMIN, "web.login.wait": ADMIN, "cron.add": ADMIN, "cron.update": ADMIN, "cron.remove": ADMIN,
         "cron.run": ADMIN, "exec.approval.resolve": APPROVALS, "channels.pairing.list": PAIRING,
         "channels.pairing.approve": PAIRING, "channels.pairing.dismiss": PAIRING}
SCOPE_NAMES = [("operator.admin", ADMIN), ("operator.approvals", APPROVALS), ("operator.pairing", PAIRING), ("operator.write", WRITE)]

connections = set()
connections_lock = threading.Lock()


class Closed(Exception):
    pass


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class Socket:
    """RFC 6455 framing over a connected socket: client frames are masked, ours are not."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""
        self.write_lock = threading.Lock()
        self.closed = False

    def _exact(self, n):
        while len(self.buffer) < n:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                if self.closed:
                    raise Closed()
                continue
            except OSError:
                raise Closed()
            if not chunk:
                raise Closed()
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read_message(self, limit):
        """The next text message (continuations joined); answers pings; raises Closed."""
        parts, size = [], 0
        while True:
            b0, b1 = self._exact(2)
            opcode, fin, length = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._exact(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._exact(8))[0]
            if size + length > limit:
                self.close(1009, "message too big")
                raise Closed()
            mask = self._exact(4) if b1 & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._exact(length))) if length else b""
            if opcode == 8:
                self.close(1000, "")
                raise Closed()
            if opcode == 9:
                self.send(10, data)
                continue
            if opcode == 10:
                continue
            parts.append(data)
            size += length
            if fin:
                return b"".join(parts).decode("utf-8", "replace")

    def send(self, opcode, data):
        n = len(data)
        head = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else b"\x7e" + struct.pack(">H", n) if n < 65536 else b"\x7f" + struct.pack(">Q", n))
        with self.write_lock:
            if self.closed:
                raise Closed()
            try:
                self.sock.sendall(head + data)
            except OSError:
                self.drop()
                raise Closed()

    def text(self, obj):
        self.send(1, (obj if isinstance(obj, str) else compact(obj)).encode())

    def close(self, code, reason):
        try:
            self.send(8, struct.pack(">H", code) + reason.encode()[:120])
        except Closed:
            pass
        self.drop()

    def drop(self):
        """Ends the TCP connection without a close frame (what a crashed gateway does)."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def accept(handler, token):
    """Serves one upgraded connection on the handler's thread until it ends."""
    if os.path.exists(os.path.join(os.path.dirname(state.devices_dir()), "standin-no-ws")):
        handler.send_json(404, {"error": {"message": "Not Found", "type": "not_found"}})
        return
    proxied = any(handler.headers.get(h) for h in ("X-Forwarded-For", "X-Real-IP", "Forwarded"))
    peer = handler.client_address[0]
    local = peer in ("127.0.0.1", "::1", "::ffff:127.0.0.1") and not proxied
    if proxied and peer.startswith("127."):
        print("[gateway] unattributable proxy-shaped traffic from loopback rejected", flush=True)
        handler.close_connection = True
        return
    key = handler.headers.get("Sec-WebSocket-Key", "")
    digest = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    handler.wfile.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {digest}\r\n\r\n".encode())
    handler.wfile.flush()
    handler.close_connection = True
    sock = handler.connection
    sock.settimeout(15)
    Connection(Socket(sock), token, peer, local).serve()


class Connection:
    def __init__(self, ws, token, peer, local):
        self.ws, self.token, self.peer, self.local = ws, token, peer, local
        self.id = str(uuid.uuid4())
        self.seq = 0
        self.seq_lock = threading.Lock()
        self.scopes = set()
        self.caps = set()
        self.client = {}

    # -- sending -------------------------------------------------------------------------------
    def event(self, name, payload, skip=0):
        """Sends an event with this connection's next `seq` (`skip` fakes lost frames)."""
        with self.seq_lock:
            self.seq += 1 + skip
            frame = {"type": "event", "event": name, "payload": payload, "seq": self.seq}
            try:
                self.ws.text(frame)
            except Closed:
                pass

    def reply(self, request_id, payload=None, error=None):
        frame = {"type": "res", "id": request_id, "ok": error is None}
        frame["payload" if error is None else "error"] = payload if error is None else error
        try:
            self.ws.text(frame)
        except Closed:
            pass

    def can_read(self):
        return bool(self.scopes & READ)

    # -- lifecycle -----------------------------------------------------------------------------
    def serve(self):
        nonce = str(uuid.uuid4())
        try:
            self.ws.text({"type": "event", "event": "connect.challenge", "payload": {"nonce": nonce, "ts": state.now_ms(), "capabilities": ["model-catalog-snapshot"]}})
            raw = self.ws.read_message(PRE_HANDSHAKE_MAX)
            if not self.handshake(raw, nonce):
                return
            self.ws.sock.settimeout(5)
            with connections_lock:
                connections.add(self)
            threading.Thread(target=self.ticks, daemon=True).start()
            self.event("health", {"ok": True, "ts": state.now_ms()})
            while True:
                self.handle(self.ws.read_message(MAX_PAYLOAD))
        except Closed:
            pass
        finally:
            self.ws.drop()
            with connections_lock:
                connections.discard(self)

    def ticks(self):
        while not self.ws.closed:
            time.sleep(TICK_MS / 1000)
            if not self.ws.closed:
                self.event("tick", {"ts": state.now_ms()})

    def fail(self, request_id, message, details, code="INVALID_REQUEST", close_reason=None):
        self.reply(request_id, error={"code": code, "message": message, "details": details})
        self.ws.close(1008, close_reason or message)
        return False

    def handshake(self, raw, nonce):
        try:
            frame = json.loads(raw)
            assert frame["type"] == "req" and frame["method"] == "connect" and isinstance(frame["id"], str)
            params = frame["params"]
            assert isinstance(params, dict)
        except (ValueError, KeyError, AssertionError, TypeError):
            self.ws.close(1008, "invalid handshake: first request must be connect")
            return False
        rid = frame["id"]
        if not (params.get("minProtocol", 0) <= 4 <= params.get("maxProtocol", 0)):
            return self.fail(rid, "protocol mismatch", {"code": "PROTOCOL_MISMATCH", "expectedProtocol": 4})
        auth = params.get("auth") or {}
        client = params.get("client") or {}
        role = params.get("role") or "operator"
        scopes = [s for s in params.get("scopes") or [] if isinstance(s, str)]
        device = params.get("device")
        with state.Devices() as devices:
            paired = devices.paired.get((device or {}).get("id", ""))
        token_ok = bool(self.token) and hmac.compare_digest(str(auth.get("token", "")).encode(), self.token.encode())
        device_token_ok = bool(paired) and hmac.compare_digest(str(auth.get("deviceToken", "")).encode(), paired["token"].encode())
        if not token_ok and not device_token_ok:
            if auth.get("deviceToken") and paired is not None:
                return self.fail(rid, "unauthorized: device token mismatch", {"code": "AUTH_DEVICE_TOKEN_MISMATCH", "recommendedNextStep": "update_auth_credentials"})
            return self.fail(rid, "unauthorized: gateway token mismatch (provide gateway auth token)",
                             {"code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch", "canRetryWithDeviceToken": False,
                              "recommendedNextStep": "update_auth_credentials"})
        device_token = None
        if device is not None:
            problem = self.check_device(device, client, role, scopes, auth, nonce)
            if problem:
                return self.fail(rid, f"device identity rejected: {problem}", {"code": problem, "reason": problem.lower()})
            with state.Devices() as devices:
                paired = devices.paired.get(device["id"])
                fits = paired and paired["publicKey"] == device["publicKey"] and paired["role"] == role and set(scopes) <= set(paired["scopes"])
                if not fits and self.local:
                    paired = devices.approve(devices.request(device["id"], device["publicKey"], role, scopes, client, self.peer))
                elif not fits:
                    reason = "scope-upgrade" if paired else "not-paired"
                    request_id = devices.request(device["id"], device["publicKey"], role, scopes, client, self.peer)
                    print(f"[gateway] device pairing requested: {request_id} for {device['id'][:12]} from {self.peer}", flush=True)
            if not (fits or self.local):
                return self.fail(rid, "pairing required: device is not approved yet",
                                 {"code": "PAIRING_REQUIRED", "reason": reason, "requestId": request_id, "deviceId": device["id"],
                                  "requestedRole": role, "requestedScopes": scopes,
                                  "remediationHint": "Approve this device from the pending pairing requests."},
                                 code="NOT_PAIRED", close_reason=f"pairing required: device is not approved yet (requestId: {request_id})")
            device_token = paired["token"]
        granted = scopes if (self.local or device is not None) else []
        self.scopes, self.client = set(granted), client
        self.caps = set(c for c in params.get("caps") or [] if isinstance(c, str))
        hello_auth = {"method": "token", "role": role, "scopes": granted}
        if device_token:
            hello_auth.update({"deviceToken": device_token, "issuedAtMs": state.now_ms()})
        self.reply(rid, {
            "type": "hello-ok", "protocol": 4,
            "server": {"version": "2026.9.6-standin", "connId": self.id},
            "features": {"methods": METHODS, "events": EVENTS, "capabilities": ["chat-send-routing-contract"]},
            "snapshot": {"stateVersion": {"presence": 1, "health": 1}, "uptimeMs": 0,
                         "sessionDefaults": {"defaultAgentId": "main", "mainKey": "main", "mainSessionKey": "agent:main:main", "scope": "per-sender"},
                         "authMode": "token"},
            "auth": hello_auth,
            "policy": {"maxPayload": MAX_PAYLOAD, "maxBufferedBytes": 52428800, "tickIntervalMs": TICK_MS},
        })
        return True

    def check_device(self, device, client, role, scopes, auth, nonce):
        try:
            public = b64url_decode(device["publicKey"])
            if hashlib.sha256(public).hexdigest() != device["id"]:
                return "DEVICE_AUTH_DEVICE_ID_MISMATCH"
            if device.get("nonce") != nonce:
                return "DEVICE_AUTH_NONCE_MISMATCH"
            signed_at = int(device["signedAt"])
            if abs(signed_at - state.now_ms()) > SKEW_MS:
                return "DEVICE_AUTH_SIGNATURE_EXPIRED"
            token = auth.get("token") or auth.get("deviceToken") or auth.get("bootstrapToken") or ""
            norm = lambda v: (v or "").strip().lower()  # noqa: E731
            fields = [device["id"], client.get("id", ""), client.get("mode", ""), role, ",".join(scopes), str(signed_at), token, nonce]
            v3 = "|".join(["v3"] + fields + [norm(client.get("platform")), norm(client.get("deviceFamily"))])
            key = Ed25519PublicKey.from_public_bytes(public)
            signature = b64url_decode(device["signature"])
            try:
                key.verify(signature, v3.encode())
            except InvalidSignature:
                key.verify(signature, "|".join(["v2"] + fields).encode())
            return None
        except InvalidSignature:
            return "DEVICE_AUTH_SIGNATURE_INVALID"
        except (KeyError, ValueError, TypeError):
            return "DEVICE_AUTH_INVALID"

    # -- requests ------------------------------------------------------------------------------
    def handle(self, raw):
        try:
            frame = json.loads(raw)
            assert isinstance(frame, dict) and frame.get("type") == "req" and isinstance(frame.get("id"), str) and isinstance(frame.get("method"), str)
        except (ValueError, AssertionError):
            self.ws.close(1008, "invalid request frame")
            raise Closed()
        rid, method, params = frame["id"], frame["method"], frame.get("params") or {}
        needed = NEEDS.get(method, READ)
        if method not in METHODS + HIDDEN_METHODS:
            return self.reply(rid, error={"code": "INVALID_REQUEST", "message": f"unknown method: {method}"})
        if not isinstance(params, dict):
            return self.reply(rid, error={"code": "INVALID_REQUEST", "message": "params must be an object"})
        if not self.scopes & needed:
            scope = next((name for name, group in SCOPE_NAMES if group is needed), "operator.read")
            return self.reply(rid, error={"code": "FORBIDDEN", "message": f"missing scope: {scope}",
                                          "details": {"code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]}})
        handler = gateway_runs if method in CHAT_METHODS else gateway_cron if method in CRON_METHODS else gateway_admin
        if handler is gateway_runs:
            return self.dispatch(handler, rid, method, params)
        # Slow methods (web.login.wait) must not hold up this connection's reader.
        threading.Thread(target=self.dispatch, args=(handler, rid, method, params), daemon=True).start()

    def dispatch(self, handler, rid, method, params):
        try:
            handler.call(self, rid, method, params)
        except (gateway_runs.BadRequest, gateway_admin.BadRequest, gateway_cron.BadRequest) as error:
            self.reply(rid, error={"code": "INVALID_REQUEST", "message": str(error)})
        except (ValueError, TypeError, KeyError) as error:
            self.reply(rid, error={"code": "INVALID_REQUEST", "message": f"invalid params: {error}"})


def broadcast(name, payload, only=None, scope=None):
    """Sends an event to every connection that may read (or to `only`'s members, or to those
    holding `scope` or admin)."""
    with connections_lock:
        targets = [c for c in connections if c.can_read() and (only is None or c in only)
                   and (scope is None or scope in c.scopes or "operator.admin" in c.scopes)]
    for connection in targets:
        connection.event(name, payload)


def drop_all():
    with connections_lock:
        targets = list(connections)
    for connection in targets:
        connection.ws.drop()
