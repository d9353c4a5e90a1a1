"""The stand-in gateway's scheduler: `cron.list`, `cron.status`, `cron.add`, `cron.update`,
`cron.remove`, `cron.run`, `cron.runs`, as openclaw 2026.9.6 documents them, with jobs and the
run log kept in the agent's state directory (`cron/jobs.json`, `cron/runs.jsonl`).

A job's schedule is `{kind:"cron", expr, tz?}` (five fields, UTC), `{kind:"at", at}` (ISO time,
once) or `{kind:"every", everyMs}`; its payload `{kind:"agentTurn", message}` runs as an agent
turn in its session (`main`, or `session:<key>`), streamed to every operator like any run, so
ocaas imports it into history. Each run ends with a `cron` event (`action:"finished"`).
"""
import datetime
import json
import os
import threading
import time
import uuid

import gateway_state as state

lock = threading.RLock()
RUN = None  # gateway_runs.run_unattended(key, message) -> (status, summary)
BROADCAST = None  # gateway_ws.broadcast


class BadRequest(Exception):
    pass


def folder(create=False):
    """The scheduler's folder in the state directory (made only when something is written)."""
    path = os.path.join(os.path.dirname(state.devices_dir()), "cron")
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def load():
    try:
        with open(os.path.join(folder(), "jobs.json"), encoding="utf-8") as source:
            return json.load(source)
    except (OSError, ValueError):
        return []


def save(jobs):
    path = os.path.join(folder(create=True), "jobs.json")
    with open(path + ".tmp", "w", encoding="utf-8") as out:
        json.dump(jobs, out)
    os.replace(path + ".tmp", path)


def field(spec, low, high):
    values = set()
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
            if step < 1:
                raise ValueError("step")
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-", 1))
        else:
            start = end = int(part)
        if start < low or end > high or start > end:
            raise ValueError("range")
        values.update(range(start, end + 1, step))
    return values


def parse_cron(expr):
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError("five fields")
    limits = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
    return [field(p, lo, hi) for p, (lo, hi) in zip(parts, limits)]


def parse_at(text):
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("at needs a time zone")
    return int(moment.timestamp() * 1000)


def next_run(schedule, after_ms):
    kind = schedule.get("kind")
    if kind == "at":
        at = parse_at(schedule["at"])
        return at if at > after_ms else None
    if kind == "every":
        every = int(schedule["everyMs"])
        anchor = int(schedule.get("anchorMs") or 0)
        return after_ms + every - ((after_ms - anchor) % every)
    minutes, hours, days, months, weekdays = parse_cron(schedule["expr"])
    moment = datetime.datetime.fromtimestamp(after_ms / 1000, datetime.timezone.utc).replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    for _ in range(366 * 24 * 60):
        if moment.month in months and moment.day in days and (moment.weekday() + 1) % 7 in weekdays and moment.hour in hours and moment.minute in minutes:
            return int(moment.timestamp() * 1000)
        moment += datetime.timedelta(minutes=1)
    return None


def check(job):
    if not isinstance(job.get("name"), str) or not job["name"].strip():
        raise BadRequest("name is required")
    schedule = job.get("schedule")
    if not isinstance(schedule, dict) or schedule.get("kind") not in ("cron", "at", "every"):
        raise BadRequest("schedule.kind must be cron, at or every")
    try:
        if schedule["kind"] == "cron":
            parse_cron(schedule["expr"])
        elif schedule["kind"] == "at":
            parse_at(schedule["at"])
        elif int(schedule["everyMs"]) < 1000:
            raise ValueError("everyMs")
    except (KeyError, ValueError, TypeError) as error:
        raise BadRequest(f"invalid schedule: {error}")
    payload = job.get("payload")
    if not isinstance(payload, dict) or payload.get("kind") != "agentTurn" or not isinstance(payload.get("message"), str) or not payload["message"]:
        raise BadRequest("payload must be {kind:\"agentTurn\", message}")
    target = job.get("sessionTarget", "main")
    if not isinstance(target, str) or not (target in ("main", "isolated") or target.startswith("session:")):
        raise BadRequest("sessionTarget must be main, isolated or session:<key>")


def arm(job, now):
    job.setdefault("state", {})
    job["state"]["nextRunAtMs"] = next_run(job["schedule"], now) if job.get("enabled", True) else None


def event(action, job, **extra):
    if BROADCAST:
        BROADCAST("cron", {"jobId": job["id"], "action": action, "job": job, "nextRunAtMs": job.get("state", {}).get("nextRunAtMs"), **extra})


def call(conn, rid, method, params):
    now = state.now_ms()
    with lock:
        jobs = load()
        if method in ("cron.list", "cron.status"):
            if method == "cron.status":
                upcoming = [j["state"]["nextRunAtMs"] for j in jobs if (j.get("state") or {}).get("nextRunAtMs")]
                return conn.reply(rid, {"enabled": True, "triggersEnabled": True, "jobs": len(jobs), "nextWakeAtMs": min(upcoming) if upcoming else None})
            return conn.reply(rid, {"jobs": jobs, "total": len(jobs), "limit": 500, "offset": 0, "nextOffset": None, "hasMore": False})
        if method == "cron.add":
            job = {k: params[k] for k in ("name", "description", "schedule", "sessionTarget", "wakeMode", "payload", "enabled", "delivery") if k in params}
            check(job)
            job.update(id=str(uuid.uuid4()), createdAtMs=now, updatedAtMs=now)
            job.setdefault("enabled", True)
            arm(job, now)
            jobs.append(job)
            save(jobs)
            event("added", job)
            return conn.reply(rid, job)
        job_id = params.get("id") or params.get("jobId")
        job = next((j for j in jobs if j["id"] == job_id), None)
        if method == "cron.runs":
            limit = min(max(int(params.get("limit") or 50), 1), 200)
            entries = []
            try:
                with open(os.path.join(folder(), "runs.jsonl"), encoding="utf-8") as source:
                    entries = [json.loads(line) for line in source if line.strip()]
            except (OSError, ValueError):
                pass
            entries = [e for e in entries if job_id in (None, e["jobId"])][-limit:][::-1]
            return conn.reply(rid, {"entries": entries, "total": len(entries)})
        if job is None:
            return conn.reply(rid, error={"code": "INVALID_REQUEST", "message": f"unknown cron job id: {job_id}"})
        if method == "cron.update":
            patch = params.get("patch") or {}
            updated = {**job, **{k: v for k, v in patch.items() if k in ("name", "description", "schedule", "sessionTarget", "wakeMode", "payload", "enabled")}}
            check(updated)
            updated["updatedAtMs"] = now
            arm(updated, now)
            jobs[jobs.index(job)] = updated
            save(jobs)
            event("updated", updated)
            return conn.reply(rid, updated)
        if method == "cron.remove":
            jobs.remove(job)
            save(jobs)
            event("removed", job)
            return conn.reply(rid, {"ok": True, "removed": True})
        if method == "cron.run":
            run_id = str(uuid.uuid4())
            threading.Thread(target=fire, args=(job["id"], run_id), daemon=True).start()
            return conn.reply(rid, {"ok": True, "enqueued": True, "runId": run_id})
    raise BadRequest(f"unknown method: {method}")


def fire(job_id, run_id):
    with lock:
        job = next((j for j in load() if j["id"] == job_id), None)
    if job is None:
        return
    started = state.now_ms()
    target = job.get("sessionTarget", "main")
    key = target[len("session:"):] if target.startswith("session:") else "main"
    print(f"[gateway] cron job {job_id} ({job['name']}) runs in {key}", flush=True)
    event("started", job, runAtMs=started)
    status, summary = RUN(key, job["payload"]["message"], run_id)
    ended = state.now_ms()
    with lock:
        jobs = load()
        for stored in jobs:
            if stored["id"] == job_id:
                stored.setdefault("state", {}).update(lastRunAtMs=started, lastRunStatus=status, lastStatus=status, lastDurationMs=ended - started,
                                                      lastError=None if status == "ok" else summary)
                if stored["schedule"]["kind"] == "at":
                    stored["enabled"] = False
                arm(stored, ended)
                job = stored
        save(jobs)
        entry = {"ts": ended, "jobId": job_id, "jobName": job["name"], "action": "finished", "status": status, "summary": summary[:500],
                 "runAtMs": started, "durationMs": ended - started, "nextRunAtMs": job["state"].get("nextRunAtMs"),
                 "sessionKey": state.canonical(key), "runId": run_id}
        with open(os.path.join(folder(create=True), "runs.jsonl"), "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
    event("finished", job, status=status, runAtMs=started, durationMs=ended - started)


def scheduler():
    """Fires due jobs; a job missed while the sandbox was frozen fires as soon as it thaws."""
    while True:
        time.sleep(0.5)
        now = state.now_ms()
        due = []
        with lock:
            jobs = load()
            for job in jobs:
                upcoming = (job.get("state") or {}).get("nextRunAtMs")
                if job.get("enabled", True) and upcoming and upcoming <= now:
                    job["state"]["nextRunAtMs"] = None
                    due.append(job["id"])
            if due:
                save(jobs)
        for job_id in due:
            threading.Thread(target=fire, args=(job_id, str(uuid.uuid4())), daemon=True).start()


def start():
    threading.Thread(target=scheduler, daemon=True).start()
