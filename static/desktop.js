// The desktop page: connects noVNC (Debian's novnc package, served under /novnc) to the
// instance's vnc/ws with the ticket from the URL fragment, or with the session cookie.
import RFB from '/novnc/core/rfb.js';

const instanceId = document.body.dataset.instanceId;
const status = document.getElementById('status');
const ticket = new URLSearchParams(location.hash.slice(1)).get('ticket');
// The ticket is single-use: drop it from the address bar so a reload doesn't retry it.
if (ticket) history.replaceState(null, '', location.pathname);

const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
let url = `${scheme}//${location.host}/api/instances/${encodeURIComponent(instanceId)}/vnc/ws`;
if (ticket) url += `?ticket=${encodeURIComponent(ticket)}`;

function show(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

show('connecting', 'Connecting…');
const rfb = new RFB(document.getElementById('screen'), url, { wsProtocols: ['binary'] });
rfb.scaleViewport = true;
rfb.resizeSession = false;
rfb.addEventListener('connect', () => {
  sessionStorage.removeItem('ocaas-desktop-reloaded');
  show('connected', 'Connected');
});
rfb.addEventListener('disconnect', (event) =>
  show('disconnected', event.detail.clean ? 'Disconnected' : 'Connection failed (the link may have expired: get a new one from vnc-url)'));
rfb.addEventListener('desktopname', (event) => { document.title = `${event.detail.name} · ocaas`; });
window.ocaasDesktop = rfb;
