#!/bin/sh
# Entrypoint shared by the production and the offline sandbox images. Runs as the sandbox user
# (uid 1000) under tini: writes the gateway config, starts the virtual desktop (Xvfb on :1, a
# window manager, x11vnc on :5900 without password — the network is private and ocaas's
# tickets are the access control), then execs the gateway named by $OCAAS_GATEWAY.
set -eu

export HOME="${HOME:-/home/sandbox}" DISPLAY="${DISPLAY:-:1}"
export OPENCLAW_STATE_DIR="$HOME/.openclaw" OPENCLAW_CONFIG_PATH="$HOME/.openclaw/openclaw.json"
export OPENCLAW_NO_AUTO_UPDATE=1 OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_RESPAWN=1 NO_COLOR=1

python3 /opt/ocaas/write_config.py "$OPENCLAW_CONFIG_PATH"

Xvfb "$DISPLAY" -screen 0 "${OCAAS_SCREEN:-1280x800x24}" -nolisten tcp >"$HOME/.xvfb.log" 2>&1 &
for _ in $(seq 1 50); do
  [ -e "/tmp/.X11-unix/X${DISPLAY#:}" ] && break
  sleep 0.1
done
# fluxbox draws its style's wallpaper with hsetroot (without a setter it complains in a dialog).
fluxbox >"$HOME/.fluxbox.log" 2>&1 &
# A terminal window, so a fresh desktop visibly shows something.
(cd /workspace && xterm -geometry 100x30+40+40 -title workspace >/dev/null 2>&1) &
x11vnc -display "$DISPLAY" -rfbport 5900 -forever -shared -nopw -quiet -noxdamage >"$HOME/.x11vnc.log" 2>&1 &

cd /workspace
# Word splitting of $OCAAS_GATEWAY is intended: it is a command line set by the image.
# shellcheck disable=SC2086
exec $OCAAS_GATEWAY
