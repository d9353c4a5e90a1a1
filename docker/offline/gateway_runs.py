"""The stand-in gateway's chat methods over WebSocket: `chat.send` runs, `chat.history`, `chat.abort`.

A run records the user message, streams status, the answer and (for `/exec CMD`) a real tool step,
and records the assistant's messages in the shared transcript, so HTTP and WS see one session.
Test controls besides gateway.py's answers: `/exec CMD` (a tool step; output streamed line by line;
`chat.abort` kills it), `/stall` (status, then nothing until aborted), `/drop TEXT` (every socket is
cut mid-answer; the run still finishes and is recorded), `/garbage TEXT` (malformed frames and a
`seq` jump first).
"""
import os
import subprocess
import threading
import time
import uuid

import gateway_state as state

runs = {}
finished = {}
runs_lock = threading.Lock()
ANSWER = None  # gateway.py's answer(text, key) -> (pieces, delay, failed)


class BadRequest(Exception):
    pass


def call(conn, rid, method, params):
    import gateway_ws
    if method == "health":
        return conn.reply(rid, {"ok": True, "ts": state.now_ms()})
    if method == "sessions.list":
        with state.sessions_lock:
            rows = [{"key": k, "sessionId": v["id"], "totalMessages": len(v["messages"])} for k, v in state.sessions.items()]
        return conn.reply(rid, {"sessions": rows})
    key = params.get("sessionKey")
    if not isinstance(key, str) or not 1 <= len(key) <= 512:
        raise BadRequest("sessionKey must be a string of 1 to 512 characters")
    if key.split(":")[0] in ("subagent", "cron", "acp"):
        raise BadRequest("reserved session key prefix")
    canonical = state.canonical(key)
    if method == "chat.history":
        limit = params.get("limit", 200)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise BadRequest("limit must be 1 to 1000")
        session_id, messages, total = state.history(canonical, limit)
        with runs_lock:
            active = [r.id for r in runs.values() if r.key == canonical]
        return conn.reply(rid, {"sessionKey": key, "sessionId": session_id, "messages": messages, "totalMessages": total,
                                "hasMore": total > len(messages), "pendingInputs": {"items": [], "total": 0},
                                "sessionInfo": {"key": canonical, "hasActiveRun": bool(active), "activeRunIds": active}})
    if method == "chat.abort":
        wanted = params.get("runId")
        with runs_lock:
            if wanted is not None and wanted in runs and runs[wanted].key != canonical:
                raise BadRequest("runId does not match sessionKey")
            hit = [r for r in runs.values() if r.key == canonical and (wanted is None or r.id == wanted)]
        for run in hit:
            run.abort()
        return conn.reply(rid, {"ok": True, "aborted": bool(hit), "runIds": [r.id for r in hit]})
    # chat.send
    message, run_id = params.get("message"), params.get("idempotencyKey")
    if not isinstance(message, str) or not isinstance(run_id, str) or not run_id:
        raise BadRequest("message and idempotencyKey are required")
    with runs_lock:
        if run_id in runs:
            return conn.reply(rid, {"runId": run_id, "status": "in_flight"})
        if run_id in finished:
            return conn.reply(rid, {"runId": run_id, "status": "ok"})
        run = Run(run_id, canonical, message, conn, gateway_ws)
        runs[run_id] = run
        # Tool events go to tool-event clients that asked for a run in this session.
        for other in runs.values():
            if other.key == canonical and "tool-events" in conn.caps:
                other.tool_recipients.add(conn)
    conn.reply(rid, {"runId": run_id, "status": "started"})
    threading.Thread(target=run.run, daemon=True).start()


class Run:
    def __init__(self, run_id, key, text, conn, ws):
        self.id, self.key, self.text, self.origin, self.ws = run_id, key, text, conn, ws
        self.tool_recipients = {conn} if conn is not None and "tool-events" in conn.caps else set()
        self.error = None
        self.seq = 0
        self.stopped = threading.Event()
        self.process = None
        self.text_so_far = ""
        # Where the text after the last tool step starts (recorded as its own message).
        self.tail_from = 0

    def abort(self):
        self.stopped.set()
        process = self.process
        if process is not None:
            # The whole tool's process group, as the real gateway stops a tool's process tree.
            try:
                os.killpg(process.pid, 9)
            except OSError:
                pass

    def chat(self, chat_state, **extra):
        self.seq += 1
        self.ws.broadcast("chat", {"runId": self.id, "sessionKey": self.key, "agentId": "main", "seq": self.seq, "state": chat_state, **extra})

    def agent(self, stream, data):
        self.seq += 1
        payload = {"runId": self.id, "stream": stream, "data": data, "sessionKey": self.key, "agentId": "main", "seq": self.seq,
                   "ts": state.now_ms(), "isHeartbeat": False}
        self.ws.broadcast("agent", payload, only=self.tool_recipients if stream == "tool" else None)

    def say(self, pieces, delay=0.0, item=1):
        for piece in pieces:
            if self.stopped.wait(delay) if delay else self.stopped.is_set():
                return False
            self.text_so_far += piece
            self.agent("assistant", {"text": self.text_so_far, "delta": piece, "itemId": f"{self.id}:{item}"})
            self.chat("delta", deltaText=piece, message=self.message())
        return True

    def message(self):
        return {"role": "assistant", "content": [{"type": "text", "text": self.text_so_far}], "timestamp": state.now_ms()}

    def run(self):
        # Like the real gateway, say on stdout what it is doing (ocaas's instance logs show it).
        print(f"[gateway] chat run {self.id} session={self.key}", flush=True)
        state.record(self.key, state.user_message(self.text, self.id))
        started = state.now_ms()
        for phase in ("preparing_workspace", "preparing_context", "starting_model"):
            self.chat("status", phase=phase)
            self.agent("run_status", {"phase": phase})
            if phase == "preparing_context":
                self.agent("lifecycle", {"phase": "start", "startedAt": started})
        self.agent("lifecycle", {"phase": "model", "provider": "standin", "model": "standin"})
        try:
            error = self.body()
        except Exception as failure:  # noqa: BLE001 - a stand-in reports what broke, like the real one
            error = str(failure)
        aborted = self.stopped.is_set()
        self.error = error
        if error and not aborted:
            self.chat("error", errorMessage=error, errorKind="timeout")
            self.agent("lifecycle", {"phase": "error", "error": error, "endedAt": state.now_ms()})
        else:
            tail = self.text_so_far[self.tail_from:].lstrip("\n")
            if tail:
                state.record(self.key, state.assistant_message([{"type": "text", "text": tail}], self.id, "aborted" if aborted else "stop"))
            self.agent("usage", {"outputTokens": 10})
            end = {"phase": "end", "stopReason": "aborted" if aborted else "stop", "aborted": aborted, "startedAt": started, "endedAt": state.now_ms()}
            self.agent("lifecycle", end)
            self.chat("aborted" if aborted else "final", stopReason="aborted" if aborted else "stop", message=self.message())
        with runs_lock:
            runs.pop(self.id, None)
            finished[self.id] = True
            while len(finished) > 1000:
                finished.pop(next(iter(finished)))

    def body(self):
        """Streams the answer; an error message, or None."""
        text = self.text
        if text.startswith("/exec "):
            return self.tool_step(text[len("/exec "):])
        if text.startswith("/stall"):
            self.stopped.wait(600)
            return None
        if text.startswith("/drop "):
            words = split(text[len("/drop "):])
            self.say(words[:1])
            self.ws.drop_all()
            time.sleep(0.3)
            self.say(words[1:])
            return None
        if text.startswith("/garbage "):
            conn = self.origin
            for raw in ("not json at all", "[1,2,3]", '{"type":"event","event":"chat","payload":"nonsense"}'):
                try:
                    conn.ws.text(raw)
                except self.ws.Closed:
                    pass
            conn.event("health", {"ok": True}, skip=1000)
            self.say(split(text[len("/garbage "):]))
            return None
        pieces, delay, failed = ANSWER(text, self.key)
        if failed:
            return "upstream provider timeout"
        try:
            self.say(pieces, delay)
        except Exception as error:  # noqa: BLE001 - ProviderError from gateway.py
            return str(error)
        return None

    def tool_step(self, command):
        self.say(["Running", " a", " command."])
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        preamble = self.text_so_far
        state.record(self.key, state.assistant_message([{"type": "text", "text": preamble}], self.id, "toolUse"))
        state.record(self.key, state.assistant_message([{"type": "toolCall", "id": call_id, "name": "exec", "arguments": {"command": command}}], self.id, "toolUse"))
        self.tail_from = len(preamble)
        item = {"itemId": f"tool:{call_id}", "toolCallId": call_id, "name": "exec", "kind": "tool", "title": "Exec"}
        self.agent("item", {**item, "phase": "start", "status": "running", "startedAt": state.now_ms()})
        self.agent("tool", {"phase": "start", "name": "exec", "toolCallId": call_id, "args": {"command": command}})
        begun = time.monotonic()
        output = ""
        import gateway_admin
        decision = gateway_admin.ask_approval(self.ws, command, self.key) if not self.stopped.is_set() else "deny"
        if decision == "deny" and not self.stopped.is_set():
            output, code = "exec denied: the operator did not approve this command", 126
        elif not self.stopped.is_set():
            self.process = subprocess.Popen(["sh", "-c", command], cwd="/workspace" if os.path.isdir("/workspace") else None, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
            for line in self.process.stdout:
                output += line
                self.agent("tool", {"phase": "update", "name": "exec", "toolCallId": call_id,
                                    "partialResult": {"content": [{"type": "text", "text": output}], "details": {"status": "running"}}})
                self.agent("command_output", {"itemId": f"command:{call_id}", "phase": "delta", "toolCallId": call_id, "name": "exec",
                                              "output": line, "status": "running"})
            code = self.process.wait()
        else:
            code = -9
        aborted = self.stopped.is_set()
        result = output.rstrip("\n") if not aborted else output + "[aborted]"
        is_error = code != 0
        duration = int((time.monotonic() - begun) * 1000)
        self.agent("tool", {"phase": "result", "name": "exec", "toolCallId": call_id, "isError": is_error,
                            "result": {"content": [{"type": "text", "text": result}],
                                       "details": {"status": "completed" if not aborted else "aborted", "exitCode": code, "durationMs": duration, "aggregated": result}}})
        self.agent("item", {**item, "phase": "end", "status": "failed" if is_error else "completed", "endedAt": state.now_ms()})
        self.agent("command_output", {"itemId": f"command:{call_id}", "phase": "end", "toolCallId": call_id, "name": "exec",
                                      "output": result, "status": "completed", "exitCode": code, "durationMs": duration})
        state.record(self.key, state.tool_result_message(call_id, "exec", result, is_error, self.id))
        if aborted:
            return None
        self.say(split(f"\n\nTool finished. Output was: {result}"), item=2)
        return None


def run_unattended(key, message, run_id):
    """A turn nobody's connection asked for (a cron job): ("ok" | "error", the answer or error)."""
    import gateway_ws
    canonical = state.canonical(key)
    run = Run(run_id, canonical, message, None, gateway_ws)
    with runs_lock:
        runs[run_id] = run
    run.run()
    return ("error", run.error) if run.error else ("ok", run.text_so_far)


def split(text):
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []
