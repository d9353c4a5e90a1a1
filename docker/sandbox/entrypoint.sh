#!/bin/sh
# Entrypoint shared by the production and the offline sandbox images. Runs as the sandbox user
# (uid 1000) under tini: writes the gateway config, starts the virtual desktop (Xvfb on :1, a
# window manager, x11vnc on :5900 behind the instance's own password $OCAAS_VNC_PASSWORD, which
# ocaas's vnc/ws bridge answers on the client's behalf), then execs the gateway named by
# $OCAAS_GATEWAY. The root filesystem is read-only: $HOME and /tmp are size-capped tmpfs, the
# agent's state ($OCAAS_STATE_DIR, linked as ~/.openclaw) and /workspace are the instance's storage.
set -eu

export HOME="${HOME:-/home/sandbox}" DISPLAY="${DISPLAY:-:1}"
export OPENCLAW_STATE_DIR="${OCAAS_STATE_DIR:-$HOME/.openclaw}"
export OPENCLAW_CONFIG_PATH="$OPENCLAW_STATE_DIR/openclaw.json"
# Tools that look for ~/.openclaw find the state on the instance's storage.
if [ "$OPENCLAW_STATE_DIR" != "$HOME/.openclaw" ] && [ ! -e "$HOME/.openclaw" ]; then
  ln -s "$OPENCLAW_STATE_DIR" "$HOME/.openclaw"
fi
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
# Without a password from ocaas, a random one nobody knows: the desktop is never open.
vnc_password=${OCAAS_VNC_PASSWORD:-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}
unset OCAAS_VNC_PASSWORD
mkdir -p "$HOME/.vnc"
x11vnc -storepasswd "$vnc_password" "$HOME/.vnc/passwd" >/dev/null 2>&1
x11vnc -display "$DISPLAY" -rfbport 5900 -forever -shared -rfbauth "$HOME/.vnc/passwd" -quiet -noxdamage >"$HOME/.x11vnc.log" 2>&1 &

cd /workspace
# Word splitting of $OCAAS_GATEWAY is intended: it is a command line set by the image.
# shellcheck disable=SC2086
exec $OCAAS_GATEWAY
