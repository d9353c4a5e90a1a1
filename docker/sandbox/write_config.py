#!/usr/bin/env python3
"""Writes the gateway's openclaw.json from the sandbox environment (DESIGN.md, "Sandbox image
contract"): token auth from OPENCLAW_GATEWAY_TOKEN, the operator's LLM from OCAAS_LLM_*,
the chat completions endpoint on, update checks, mDNS and the catalog refresh off.

The file is the agent's configuration too: what its user set through ocaas's config API
(channels, tools, cron, …) is kept. Only the keys ocaas owns are written on every start —
gateway auth, port and mode, the `operator` model provider and the chat endpoint — and the
defaults (bind, model, workspace, …) only where nothing is set. A file that is not a JSON
object is replaced (ocaas keeps the last good configuration and puts it back itself)."""
import json
import os
import sys

path = sys.argv[1]
llm_model = os.environ.get("OCAAS_LLM_MODEL") or "default"

try:
    with open(path, encoding="utf-8") as source:
        config = json.load(source)
    if not isinstance(config, dict):
        config = {}
except (OSError, ValueError):
    config = {}


def section(parent, key):
    value = parent.get(key)
    if not isinstance(value, dict):
        value = parent[key] = {}
    return value


gateway = section(config, "gateway")
gateway.update({"mode": "local", "port": 18789, "auth": {"mode": "token", "token": os.environ.get("OPENCLAW_GATEWAY_TOKEN", "")}})
gateway.setdefault("bind", "lan")
section(section(section(gateway, "http"), "endpoints"), "chatCompletions")["enabled"] = True
section(config, "update").setdefault("checkOnStart", False)
section(section(config, "discovery"), "mdns").setdefault("mode", "off")
models = section(config, "models")
models.setdefault("mode", "merge")
section(models, "catalogRefresh").setdefault("enabled", False)
section(models, "providers")["operator"] = {
    "baseUrl": os.environ.get("OCAAS_LLM_BASE_URL", ""),
    "apiKey": os.environ.get("OCAAS_LLM_API_KEY", ""),
    "api": "openai-completions",
    "models": [{"id": llm_model, "name": llm_model, "reasoning": False, "input": ["text"],
                "contextWindow": 128000, "maxTokens": 4096}],
}
defaults = section(section(config, "agents"), "defaults")
section(defaults, "model").setdefault("primary", f"operator/{llm_model}")
defaults.setdefault("workspace", "/workspace")

os.makedirs(os.path.dirname(path), exist_ok=True)
tmp = f"{path}.ocaas-tmp"
with open(tmp, "w", encoding="utf-8") as out:
    json.dump(config, out, indent=2)
os.chmod(tmp, 0o600)
os.replace(tmp, path)
