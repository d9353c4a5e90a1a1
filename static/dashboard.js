// The instance dashboard: the list with live status (polled), create and lifecycle buttons,
// and for the open instance its chat (SSE), terminal (xterm.js over the terminal websocket)
// and desktop (the vnc-url page in a frame).
import { api, postStream, when, el } from '/static/api.js';
import { notify } from '/static/account.js';
import { loadModel } from '/static/model.js';
import { loadSnapshots } from '/static/snapshots.js';
import { loadAgent, closeAgent } from '/static/agent.js';

const $ = (id) => document.getElementById(id);
let poller = null;
let openId = null;
let terminal = null;

export async function startDashboard(account) {
  const plan = account.subscription;
  const active = plan && plan.active;
  const tokens = plan && plan.monthly_tokens !== null ? `, ${plan.monthly_tokens} model tokens a month` : '';
  $('plan').textContent = active ? `Plan: up to ${plan.max_instances} instance(s)${tokens}${plan.expires_at ? `, until ${when(plan.expires_at)}` : ''}.` : 'No active plan: enter an invite code to create an instance.';
  $('instance-invite').hidden = Boolean(active);
  await refresh();
  clearInterval(poller);
  poller = setInterval(() => refresh().catch(() => {}), 2000);
}

export function stopDashboard() {
  clearInterval(poller);
  rendered = '';
  $('instances').replaceChildren();
  closePanel();
}

let rendered = '';

async function refresh() {
  const instances = await api('GET', '/api/instances');
  // Redraw only on change, so a poll never swaps a button out from under a click.
  const snapshot = JSON.stringify(instances.map((i) => [i.id, i.status, i.name, i.last_error, i.stop_reason, i.keep_awake]));
  if (snapshot !== rendered) {
    rendered = snapshot;
    $('instances').replaceChildren(...instances.map(row));
  }
  if (openId && !instances.some((i) => i.id === openId)) closePanel();
}

function action(label, run, cls = 'secondary') {
  return el('button', { type: 'button', class: cls, dataset: { action: label.toLowerCase() }, onclick: async () => {
    try { await run(); await refresh(); } catch (error) { notify(error.message); }
  } }, label);
}

// "paused (idle)": the idle policy's doing, and a paused or stopped instance wakes when used.
function badge(instance) {
  const idle = instance.stop_reason === 'idle' ? ' (idle)' : '';
  const title = { paused: 'Frozen, memory kept; opening or using it resumes it.', stopped: 'Stopped; chat, terminal and desktop start it.' };
  return el('span', { class: `badge ${instance.status}`, title: title[instance.status] ?? '' }, instance.status + idle);
}

function row(instance) {
  const id = instance.id;
  const ready = instance.status === 'ready';
  const paused = instance.status === 'paused';
  const patch = (body) => api('PATCH', `/api/instances/${id}`, body);
  return el('li', { class: 'instance', dataset: { instanceId: id, status: instance.status } },
    el('div', {},
      el('strong', {}, instance.name || instance.sandbox_id), ' ', badge(instance),
      instance.keep_awake ? el('span', { class: 'badge pinned' }, 'kept awake') : '',
      instance.last_error ? el('div', { class: 'muted' }, instance.last_error) : ''),
    el('div', { class: 'actions' },
      ready || paused ? action('Open', async () => {
        // Opening a paused instance wakes it, as any use would.
        if (paused) await api('POST', `/api/instances/${id}/resume`);
        openPanel(instance);
      }, 'primary') : '',
      ready ? action('Pause', () => api('POST', `/api/instances/${id}/pause`)) : '',
      paused ? action('Resume', () => api('POST', `/api/instances/${id}/resume`)) : '',
      ready || paused ? action('Reboot', () => api('POST', `/api/instances/${id}/reboot`)) : '',
      ready || paused ? action('Shutdown', () => api('POST', `/api/instances/${id}/shutdown`)) : '',
      instance.keep_awake ? action('Let sleep', () => patch({ keep_awake: false })) : action('Keep awake', () => patch({ keep_awake: true })),
      ['stopped', 'error'].includes(instance.status) ? action('Start', () => api('POST', `/api/instances/${id}/start`)) : '',
      action('Delete', async () => {
        if (confirm('Delete this instance and its workspace?')) await api('DELETE', `/api/instances/${id}`);
      }, 'danger')));
}

$('create-instance-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = Object.fromEntries([...new FormData(event.target)].filter(([, v]) => v !== ''));
  try {
    await api('POST', '/api/instances', data);
    event.target.reset();
    await refresh();
  } catch (error) {
    notify(error.message);
  }
});

// The open instance's panel.
function openPanel(instance) {
  closePanel();
  openId = instance.id;
  $('instance-panel').hidden = false;
  $('panel-title').textContent = instance.name || instance.sandbox_id;
  showTab('chat');
  loadSessions().catch((error) => notify(error.message));
  showUsage(instance.id).catch(() => {});
}

const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;

// Storage against the quota, and memory, from the instance's live status.
async function showUsage(id) {
  $('panel-usage').textContent = '';
  const status = await api('GET', `/api/instances/${id}/status`);
  if (openId !== id) return;
  const parts = [];
  // Where it runs, on a server with several Docker hosts; a host that does not answer is said.
  if (status.node) parts.push(status.node.reachable ? `Host: ${status.node.name}` : `Host: ${status.node.name} (not answering: calls fail until it is back)`);
  if (status.disk) parts.push(`Storage: ${mib(status.disk.used_bytes)} of ${mib(status.disk.limit_bytes)}`);
  if (status.resources) parts.push(`Memory: ${mib(status.resources.memory_bytes)} of ${mib(status.resources.memory_limit_bytes)}`);
  const model = await api('GET', `/api/instances/${id}/usage`);
  if (openId !== id) return;
  parts.push(`Model: ${model.totals.prompt_tokens + model.totals.completion_tokens} tokens this month`);
  $('panel-usage').textContent = parts.join(' · ');
}

function closePanel() {
  openId = null;
  $('instance-panel').hidden = true;
  terminal?.close();
  terminal = null;
  closeLogs();
  $('desktop-frame').removeAttribute('src');
}

// Logs: the sandbox's output, followed over SSE while the tab is open.
const MAX_LOG_LINES = 1000;
let logs = null;
function openLogs(id) {
  closeLogs();
  $('logs-view').replaceChildren();
  $('logs-state').textContent = 'Following…';
  logs = new EventSource(`/api/instances/${id}/logs?tail=200&follow=true`);
  logs.addEventListener('log', (event) => {
    const line = JSON.parse(event.data);
    $('logs-view').append(el('span', { class: line.stream }, `${line.text}\n`));
    while ($('logs-view').childElementCount > MAX_LOG_LINES) $('logs-view').firstElementChild.remove();
    $('logs-view').scrollTop = $('logs-view').scrollHeight;
  });
  logs.addEventListener('end', () => { $('logs-state').textContent = 'The sandbox stopped.'; closeLogs(); });
  logs.onerror = () => { $('logs-state').textContent = 'Disconnected.'; closeLogs(); };
}
function closeLogs() {
  logs?.close();
  logs = null;
}

for (const button of document.querySelectorAll('.tabs button')) button.addEventListener('click', () => showTab(button.dataset.tab));

function showTab(name) {
  for (const button of document.querySelectorAll('.tabs button')) button.classList.toggle('active', button.dataset.tab === name);
  for (const tab of ['chat', 'terminal', 'desktop', 'logs', 'model', 'snapshots', 'agent']) $(`tab-${tab}`).hidden = tab !== name;
  if (name === 'agent') loadAgent(openId).catch((error) => notify(error.message)); else closeAgent();
  if (name === 'model') loadModel(openId).catch((error) => notify(error.message));
  if (name === 'snapshots') loadSnapshots(openId).catch((error) => notify(error.message));
  if (name === 'logs') openLogs(openId); else closeLogs();
  if (name === 'terminal' && !terminal) terminal = openTerminal(openId);
  if (name === 'desktop') openDesktop(openId).catch((error) => notify(error.message));
}

// Chat
async function loadSessions(selected) {
  const sessions = await api('GET', `/api/instances/${openId}/chat/sessions`);
  const label = (s) => `${s.title || 'Session'} · ${s.message_count} messages${s.origin === 'gateway' ? ' · from the agent' : ''}`;
  $('chat-session').replaceChildren(...sessions.map((s) => el('option', { value: s.id }, label(s))));
  if (selected) $('chat-session').value = selected;
  await loadHistory();
}

async function loadHistory() {
  const session = $('chat-session').value;
  if (!session) return $('chat-log').replaceChildren();
  const messages = await api('GET', `/api/instances/${openId}/chat/messages?session_id=${session}&tail=true&limit=100`);
  shown.clear();
  for (const message of messages) shown.set(message.id, message);
  $('chat-log').replaceChildren(...messages.map(bubble));
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
}

// The messages shown, by id: tool events change their steps in place.
const shown = new Map();

function toolStep(step) {
  const args = step.args ? JSON.stringify(step.args) : '';
  const summary = el('summary', {}, `${step.name} · ${step.status}${args ? ` · ${args.slice(0, 120)}` : ''}`);
  return el('details', { class: `tool ${step.status}`, dataset: { toolCallId: step.tool_call_id } }, summary, el('pre', {}, step.output || ''));
}

function bubble(message) {
  const text = message.content || (message.error ? `⚠ ${message.error}` : (message.tools?.length ? '' : '…'));
  const steps = (message.tools || []).map(toolStep);
  const status = message.status === 'aborted' ? [el('span', { class: 'muted' }, ' (stopped)')] : [];
  return el('li', { class: `msg ${message.role}`, dataset: { messageId: message.id, status: message.status } }, ...steps, text, ...status);
}

/** Applies a `tool` event to the message it belongs to (the step appears, grows, ends). */
function applyTool(event) {
  const message = shown.get(event.message_id);
  if (!message) return;
  message.tools = message.tools || [];
  let step = message.tools.find((s) => s.tool_call_id === event.tool_call_id);
  if (!step) message.tools.push(step = { tool_call_id: event.tool_call_id, name: event.name, status: 'running', output: '' });
  if (event.args) step.args = event.args;
  if (event.output !== undefined) step.output = event.output;
  if (event.phase === 'result') step.status = event.is_error ? 'error' : 'completed';
  const open = [...document.querySelectorAll(`[data-message-id="${message.id}"] details[open]`)].map((d) => d.dataset.toolCallId);
  upsert(message);
  for (const id of open) document.querySelector(`[data-message-id="${message.id}"] details[data-tool-call-id="${id}"]`)?.setAttribute('open', '');
}

function upsert(message) {
  const known = shown.get(message.id);
  // A streamed message event may not carry the steps a tool event added since.
  if (known?.tools?.length && !message.tools?.length) message.tools = known.tools;
  shown.set(message.id, message);
  const node = bubble(message);
  const old = $('chat-log').querySelector(`[data-message-id="${message.id}"]`);
  if (old) old.replaceWith(node); else $('chat-log').append(node);
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
}

$('chat-session').addEventListener('change', () => loadHistory().catch((error) => notify(error.message)));
$('new-session').addEventListener('click', async () => {
  try {
    const session = await api('POST', `/api/instances/${openId}/chat/sessions`, { title: `Session ${new Date().toLocaleString()}` });
    await loadSessions(session.id);
  } catch (error) { notify(error.message); }
});

$('chat-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const message = $('chat-input').value.trim();
  if (!message) return;
  $('chat-send').disabled = true;
  $('chat-stop').hidden = false;
  const body = { message, ...($('chat-session').value ? { session_id: $('chat-session').value } : {}) };
  try {
    await postStream(`/api/instances/${openId}/chat/stream`, body, (name, data) => {
      if (name === 'status') $('chat-state').textContent = `Agent: ${data.state}`;
      if (name === 'message') {
        streamingSession = data.message.session_id;
        upsert(data.message);
      }
      if (name === 'tool') applyTool(data);
      if (name === 'system_notification') notify(data.message, data.level);
      if (name === 'complete') upsert(data.assistant_message);
      if (name === 'complete' && !$('chat-session').value) loadSessions(data.session_id);
    });
    $('chat-input').value = '';
  } catch (error) {
    notify(error.message);
  } finally {
    $('chat-send').disabled = false;
    $('chat-stop').hidden = true;
  }
});

// The session of the turn being streamed (the Stop button stops it).
let streamingSession = null;
$('chat-stop').addEventListener('click', async () => {
  try {
    await api('POST', `/api/instances/${openId}/chat/abort`, streamingSession ? { session_id: streamingSession } : {});
  } catch (error) { notify(error.message); }
});

// Terminal
function openTerminal(id) {
  // The DOM renderer keeps the screen's text in the page (screen readers, tests).
  const term = new window.Terminal({ cursorBlink: true, fontSize: 14, scrollback: 2000, rendererType: 'dom' });
  term.open($('terminal'));
  const size = () => (window.XtermFit ? window.XtermFit.proposeGeometry(term) : null) || { cols: 80, rows: 24 };
  const { cols, rows } = size();
  term.resize(cols, rows);
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(`${scheme}//${location.host}/api/instances/${id}/terminal/ws?cols=${cols}&rows=${rows}`);
  socket.binaryType = 'arraybuffer';
  const encoder = new TextEncoder();
  socket.onopen = () => { $('terminal-state').textContent = 'Connected.'; term.focus(); };
  socket.onmessage = (event) => {
    if (typeof event.data === 'string') {
      const control = JSON.parse(event.data);
      if (control.type === 'exit') $('terminal-state').textContent = `The shell exited with code ${control.code}.`;
    } else {
      term.write(new TextDecoder().decode(new Uint8Array(event.data), { stream: true }));
    }
  };
  socket.onclose = () => { if (!$('terminal-state').textContent.startsWith('The shell')) $('terminal-state').textContent = 'Disconnected.'; };
  term.on('data', (data) => socket.readyState === 1 && socket.send(encoder.encode(data)));
  const onResize = () => {
    const next = size();
    term.resize(next.cols, next.rows);
    if (socket.readyState === 1) socket.send(JSON.stringify({ type: 'resize', cols: next.cols, rows: next.rows }));
  };
  window.addEventListener('resize', onResize);
  window.ocaasTerminal = term;
  return { close() { window.removeEventListener('resize', onResize); socket.close(); term.destroy(); $('terminal').replaceChildren(); } };
}

// Desktop
async function openDesktop(id) {
  const { url } = await api('GET', `/api/instances/${id}/vnc-url`);
  $('desktop-frame').src = url;
  $('desktop-link').href = url;
}
