"""State the stand-in gateway shares between its HTTP and WebSocket doors and its `openclaw` CLI.

Sessions (transcripts) live in memory, keyed by the canonical session key `agent:main:<key>`, with
messages in the shape the real gateway's `chat.history` returns (captures 70/71). Device pairing
lives in the agent's state directory (`$OPENCLAW_STATE_DIR/devices/{pending,paired}.json`), so a
pairing survives a restart of the sandbox and is lost when that state is wiped, like the real one's.
"""
import fcntl
import json
import os
import secrets
import threading
import time
import uuid

sessions = {}
sessions_lock = threading.Lock()
AGENT = "main"


def now_ms():
    return int(time.time() * 1000)


def canonical(key):
    """The gateway's canonical session key: `agent:main:<key>` (keys are lowercased)."""
    key = (key or "").strip()
    return key if key.startswith("agent:") else f"agent:{AGENT}:{key.lower()}"


def record(key, message):
    """Appends a transcript message (adds `timestamp` and `__openclaw.id`/`seq`); returns it."""
    with sessions_lock:
        entry = sessions.setdefault(key, {"id": str(uuid.uuid4()), "messages": []})
        message.setdefault("timestamp", now_ms())
        meta = message.setdefault("__openclaw", {})
        meta["id"] = str(uuid.uuid4())
        meta["seq"] = len(entry["messages"]) + 1
        entry["messages"].append(message)
        return message


def turns(key):
    """User and assistant messages so far (what the HTTP answer reports as history_turns)."""
    with sessions_lock:
        entry = sessions.get(key)
        return sum(1 for m in entry["messages"] if m["role"] in ("user", "assistant")) if entry else 0


def history(key, limit):
    with sessions_lock:
        entry = sessions.get(key) or {"id": str(uuid.uuid4()), "messages": []}
        return entry["id"], [dict(m) for m in entry["messages"][-limit:]], len(entry["messages"])


def user_message(text, run_id):
    return {"role": "user", "content": text, "idempotencyKey": f"{run_id}:user", "__openclaw": {"idempotencyKey": f"{run_id}:user"}}


def assistant_message(parts, run_id, stop_reason="stop"):
    return {"role": "assistant", "content": parts, "api": "openai-completions", "provider": "standin", "model": "standin",
            "stopReason": stop_reason, "__openclaw": {"runId": run_id}}


def tool_result_message(call_id, name, text, is_error, run_id):
    return {"role": "toolResult", "toolCallId": call_id, "toolName": name, "content": [{"type": "text", "text": text}],
            "isError": is_error, "__openclaw": {"runId": run_id}}


# -- devices -----------------------------------------------------------------------------------

def devices_dir():
    state = os.environ.get("OPENCLAW_STATE_DIR") or os.environ.get("OCAAS_STATE_DIR") or os.path.join(os.environ.get("HOME", "/tmp"), ".openclaw")
    return os.path.join(state, "devices")


class Devices:
    """`pending.json` and `paired.json` under one file lock (the gateway and the CLI both write)."""

    def __enter__(self):
        os.makedirs(devices_dir(), exist_ok=True)
        self.lock = open(os.path.join(devices_dir(), ".lock"), "w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.pending = self._read("pending.json")
        self.paired = self._read("paired.json")
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self._write("pending.json", self.pending)
            self._write("paired.json", self.paired)
        self.lock.close()

    def _read(self, name):
        try:
            with open(os.path.join(devices_dir(), name), encoding="utf-8") as source:
                value = json.load(source)
                return value if isinstance(value, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, name, value):
        path = os.path.join(devices_dir(), name)
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            json.dump(value, out)
        os.replace(path + ".tmp", path)

    def request(self, device_id, public_key, role, scopes, client, remote_ip):
        """The pending request for this device (replaced when role or scopes changed)."""
        for request_id, request in list(self.pending.items()):
            if request["deviceId"] == device_id:
                if request["role"] == role and request["scopes"] == scopes:
                    return request_id
                del self.pending[request_id]
        request_id = str(uuid.uuid4())
        self.pending[request_id] = {"requestId": request_id, "deviceId": device_id, "publicKey": public_key, "role": role,
                                    "scopes": scopes, "clientId": client.get("id"), "clientMode": client.get("mode"),
                                    "platform": client.get("platform"), "displayName": client.get("displayName"),
                                    "remoteIp": remote_ip, "ts": now_ms()}
        return request_id

    def approve(self, request_id):
        request = self.pending.pop(request_id, None)
        if request is None:
            return None
        self.paired[request["deviceId"]] = {"deviceId": request["deviceId"], "publicKey": request["publicKey"],
                                            "role": request["role"], "scopes": request["scopes"],
                                            "token": secrets.token_urlsafe(32), "approvedAtMs": now_ms()}
        return self.paired[request["deviceId"]]
