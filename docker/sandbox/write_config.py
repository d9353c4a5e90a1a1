#!/usr/bin/env python3
"""Writes the gateway's openclaw.json from the sandbox environment (DESIGN.md, "Sandbox image
contract"): token auth from OPENCLAW_GATEWAY_TOKEN, the operator's LLM from OCAAS_LLM_*,
the chat completions endpoint on, update checks, mDNS and the catalog refresh off."""
import json
import os
import sys

llm_model = os.environ.get("OCAAS_LLM_MODEL") or "default"
config = {
    "gateway": {
        "mode": "local",
        "port": 18789,
        "bind": "lan",
        "auth": {"mode": "token", "token": os.environ.get("OPENCLAW_GATEWAY_TOKEN", "")},
        "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
    },
    "update": {"checkOnStart": False},
    "discovery": {"mdns": {"mode": "off"}},
    "models": {
        "mode": "merge",
        "catalogRefresh": {"enabled": False},
        "providers": {
            "operator": {
                "baseUrl": os.environ.get("OCAAS_LLM_BASE_URL", ""),
                "apiKey": os.environ.get("OCAAS_LLM_API_KEY", ""),
                "api": "openai-completions",
                "models": [{"id": llm_model, "name": llm_model, "reasoning": False, "input": ["text"],
                            "contextWindow": 128000, "maxTokens": 4096}],
            }
        },
    },
    "agents": {"defaults": {"model": {"primary": f"operator/{llm_model}"}, "workspace": "/workspace"}},
}
path = sys.argv[1]
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w", encoding="utf-8") as out:
    json.dump(config, out, indent=2)
os.chmod(path, 0o600)
