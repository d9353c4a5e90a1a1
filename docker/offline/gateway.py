#!/usr/bin/env python3
"""ocaas's stand-in for the OpenClaw gateway, for the offline sandbox image.

It speaks the HTTP shapes captured from openclaw 2026.9.6 (see shared/openclaw-gateway-captures):
GET /health, GET /readyz (unauthenticated), GET /v1/models and POST /v1/chat/completions
(bearer token from OPENCLAW_GATEWAY_TOKEN; 401 {"error":{"message":"Unauthorized",...}}),
non-streaming and SSE streaming (role chunk, content chunks, finish chunk, optional usage chunk,
`data: [DONE]`), and an in-stream {"error":...} when the turn fails. History is kept per
`x-openclaw-session-key` (else the `user` field), like the real gateway. `GET /` with
`Upgrade: websocket` is the gateway's WebSocket protocol v4 (gateway_ws.py, gateway_runs.py),
sharing the sessions (gateway_state.py); over it `/exec CMD` is a real tool step.

Answers are deterministic so tests can assert on them. The last user message decides:
  /echo TEXT     -> TEXT
  /exec CMD      -> the output of `sh -c CMD` run in /workspace (exit code appended when not 0)
  /slow MS TEXT  -> TEXT, streamed with MS milliseconds between chunks
  /fail [TEXT]   -> the upstream error the real gateway reports when its LLM is down
  /llm TEXT      -> TEXT sent to the provider in openclaw.json the way OpenClaw calls it
                    (stream:true, stream_options.include_usage, bearer apiKey), its answer streamed
                    back; a provider error ends the turn with an in-stream error
  anything else  -> "Hello from the stand-in gateway #N. You said: MSG | history_turns=K"
"""
import argparse
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gateway_admin
import gateway_cron
import gateway_runs
import gateway_state as state
import gateway_ws

STARTED = time.monotonic()
TOKEN = os.environ.get("OPENCLAW_GATEWAY_TOKEN", "")
MODEL = "openclaw/default"
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", "camera=(), microphone=(self), geolocation=()"),
]
UPSTREAM_ERROR = {"error": {"message": "upstream provider timeout", "type": "api_error"}}

counter = {"turns": 0}
counter_lock = threading.Lock()


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def text_of(message):
    content = message.get("content", "")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def answer(user_text, session_key):
    """(pieces, delay_seconds, failed) for a user message already recorded in `session_key`."""
    with counter_lock:
        counter["turns"] += 1
        number = counter["turns"]
    history_turns = state.turns(session_key) if session_key else 1
    delay, failed = 0.0, False
    if user_text.startswith("/echo "):
        reply = user_text[len("/echo "):]
    elif user_text.startswith("/exec "):
        reply = run_command(user_text[len("/exec "):])
    elif user_text.startswith("/slow "):
        parts = user_text.split(" ", 2)
        delay = int(parts[1]) / 1000.0 if len(parts) > 1 and parts[1].isdigit() else 0.5
        reply = parts[2] if len(parts) > 2 else "slow answer"
    elif user_text.startswith("/llm "):
        return call_provider(user_text[len("/llm "):]), 0.0, False
    elif user_text.startswith("/fail"):
        reply, failed = "", True
    elif user_text.startswith("/flood "):
        # A misbehaving agent: N MiB of answer in 16 KiB pieces, made as they are sent.
        mib = int(user_text.split(" ")[1]) if user_text.split(" ")[1].isdigit() else 1
        return ("x" * 16384 for _ in range(mib * 64)), 0.0, False
    else:
        reply = f"Hello from the stand-in gateway #{number}. You said: {user_text} | history_turns={history_turns}"
    return split_words(reply), delay, failed


def recorded(pieces, key, run_id):
    """Yields `pieces` and records them as the assistant's message once all are sent."""
    sent, size = [], 0
    for piece in pieces:
        if size < (1 << 20):
            sent.append(piece)
        size += len(piece)
        yield piece
    if key and sent:
        state.record(key, state.assistant_message([{"type": "text", "text": "".join(sent)}], run_id))


class ProviderError(Exception):
    pass


def provider():
    """(base URL, key, model) of the agent's primary model, from openclaw.json."""
    try:
        with open(os.environ.get("OPENCLAW_CONFIG_PATH", ""), encoding="utf-8") as source:
            config = json.load(source)
        name, model = config["agents"]["defaults"]["model"]["primary"].split("/", 1)
        entry = config["models"]["providers"][name]
        return entry["baseUrl"], entry.get("apiKey", ""), model
    except (OSError, ValueError, KeyError, TypeError):
        raise ProviderError("no model provider is configured")


def call_provider(text):
    """Yields the provider's content deltas for one user message; raises ProviderError."""
    base_url, key, model = provider()
    if not base_url:
        raise ProviderError("no model provider is configured")
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": True,
            "stream_options": {"include_usage": True}, "tool_choice": "auto", "max_completion_tokens": 4096}
    request = urllib.request.Request(base_url.rstrip("/") + "/chat/completions", data=compact(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                                              "Accept": "text/event-stream"})
    print(f"[gateway] model call to {base_url} model={model}", flush=True)
    try:
        response = urllib.request.urlopen(request, timeout=120)
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read(16384))["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {error.code}"
        raise ProviderError(f"{error.code} {message}")
    except (OSError, ValueError) as error:
        raise ProviderError(f"the provider could not be reached: {error}")
    with response:
        for raw in response:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError:
                raise ProviderError("the provider sent a malformed stream")
            if isinstance(event, dict) and event.get("error"):
                raise ProviderError(str((event["error"] or {}).get("message", "provider error")))
            for choice in (event.get("choices") or []) if isinstance(event, dict) else []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece


def run_command(command):
    try:
        done = subprocess.run(["sh", "-c", command], cwd="/workspace" if os.path.isdir("/workspace") else None,
                              capture_output=True, text=True, timeout=60)
        out = done.stdout + done.stderr
        return out if done.returncode == 0 else f"{out}[exit {done.returncode}]"
    except subprocess.TimeoutExpired:
        return "[timed out after 60 s]"


def split_words(text):
    if not text:
        return []
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openclaw-standin"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, status, body, cache="no-store"):
        data = compact(body).encode()
        self.send_response(status)
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if cache:
            self.send_header("Cache-Control", cache)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        header = self.headers.get("Authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if TOKEN and hmac.compare_digest(given.encode(), TOKEN.encode()):
            return True
        self.send_json(401, {"error": {"message": "Unauthorized", "type": "unauthorized"}}, cache=None)
        return False

    def do_GET(self):
        path = self.path.split("?")[0]
        if self.headers.get("Upgrade", "").lower() == "websocket":
            gateway_ws.accept(self, TOKEN)
        elif path in ("/health", "/healthz"):
            self.send_json(200, {"ok": True, "status": "live"})
        elif path == "/readyz":
            uptime = int((time.monotonic() - STARTED) * 1000)
            self.send_json(200, {"ready": True, "failing": [], "uptimeMs": uptime})
        elif path == "/v1/models":
            if self.authorized():
                models = [{"id": i, "object": "model", "created": 0, "owned_by": "openclaw", "permission": []}
                          for i in ("openclaw", "openclaw/default", "openclaw/main")]
                self.send_json(200, {"object": "list", "data": models})
        else:
            self.send_json(404, {"error": {"message": "Not Found", "type": "not_found"}})

    def do_POST(self):
        if self.path.split("?")[0] != "/v1/chat/completions":
            self.send_json(404, {"error": {"message": "Not Found", "type": "not_found"}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.authorized():
            return
        try:
            body = json.loads(raw or b"{}")
            messages = body["messages"]
            assert isinstance(messages, list) and messages
        except (ValueError, KeyError, AssertionError, TypeError):
            self.send_json(400, {"error": {"message": "messages must be a non-empty array", "type": "invalid_request_error"}})
            return
        header, user = self.headers.get("x-openclaw-session-key"), body.get("user")
        session_key = state.canonical(header) if header else state.canonical(f"openai-user:{user}") if isinstance(user, str) and user else None
        # Like the real gateway, say on stdout what it is doing (ocaas's instance logs show it).
        print(f"[gateway] chat completion stream={bool(body.get('stream'))} session={session_key}", flush=True)
        completion_id = f"chatcmpl_{uuid.uuid4()}"
        user_text = next((text_of(m) for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), "")
        if session_key:
            state.record(session_key, state.user_message(user_text, completion_id))
        chunks, delay, failed = answer(user_text, session_key)
        chunks = recorded(chunks, session_key, completion_id)
        created = int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self.stream(completion_id, created, chunks, delay, failed, include_usage)
        elif failed:
            self.send_json(408, UPSTREAM_ERROR, cache=None)
        else:
            try:
                content = "".join(chunks)
            except ProviderError as error:
                self.send_json(408, {"error": {"message": str(error), "type": "api_error"}}, cache=None)
                return
            message = {"role": "assistant", "content": content}
            self.send_json(200, {"id": completion_id, "object": "chat.completion", "created": created, "model": MODEL,
                                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}, cache=None)

    def stream(self, completion_id, created, chunks, delay, failed, include_usage):
        self.send_response(200)
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "keep-alive")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta, finish=None, **extra):
            return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

        def send(data):
            payload = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")
            self.wfile.flush()

        try:
            send(compact(chunk({"role": "assistant"})))
            if failed:
                send(compact(UPSTREAM_ERROR))
            else:
                try:
                    for piece in chunks:
                        if delay:
                            time.sleep(delay)
                        send(compact(chunk({"content": piece})))
                except ProviderError as error:
                    send(compact({"error": {"message": str(error), "type": "api_error"}}))
                    send("[DONE]")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
                send(compact(chunk({}, "stop")))
                if include_usage:
                    usage = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL,
                             "choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}
                    send(compact(usage))
            send("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=18789)
    parser.add_argument("--bind", default="0.0.0.0")
    args = parser.parse_args()
    # Like the real gateway: a configuration its schema rejects stops it (exit 78, EX_CONFIG),
    # and it listens where `gateway.bind` says.
    config, _ = gateway_admin.read_config()
    issues = gateway_admin.problems(config)
    if issues:
        for issue in issues:
            print(f"[gateway] invalid config: {issue['path']}: {issue['message']}", flush=True)
        sys.exit(78)
    gateway = config.get("gateway") or {}
    bind = {"loopback": "127.0.0.1", "custom": gateway.get("customBindHost", "")}.get(gateway.get("bind"), args.bind)
    try:
        server = ThreadingHTTPServer((bind, args.port), Handler)
    except OSError as error:
        print(f"[gateway] cannot listen on {bind}:{args.port}: {error}", flush=True)
        sys.exit(1)
    server.daemon_threads = True
    gateway_runs.ANSWER = answer
    gateway_cron.RUN = gateway_runs.run_unattended
    gateway_cron.BROADCAST = gateway_ws.broadcast
    gateway_cron.start()
    # SIGUSR1 restarts the real gateway in place (OPENCLAW_NO_RESPAWN); tini passes it on.
    signal.signal(signal.SIGUSR1, lambda *_: gateway_admin.restart_soon(0))
    print(f"[gateway] listening on {bind}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
