// The open instance's Agent tab: why it is awake, its messaging channels (tokens are
// write-only; WhatsApp links with a QR code), DM pairings, schedules, approval requests (live
// from the agent feed), the tool policy, and its configuration (a checked merge patch, rolled
// back by the server if the gateway does not come back), with the doctor and a restart.
import { api, el, when } from '/static/api.js';
import { notify } from '/static/account.js';

const $ = (id) => document.getElementById(id);
let instanceId = null;
let feed = null;
const base = () => `/api/instances/${instanceId}`;
const guard = (run) => async (...args) => { try { await run(...args); } catch (error) { notify(error.message); } };
const button = (label, action, run, cls = 'secondary') => el('button', { type: 'button', class: cls, dataset: { action }, onclick: guard(run) }, label);

const REASONS = { keep_awake: 'pinned awake', schedule: 'a schedule runs soon', channel: 'a channel is connected', in_use: 'in use' };

async function loadStatus() {
  const status = await api('GET', `${base()}/agent`);
  const why = status.awake_reason ? `Awake: ${REASONS[status.awake_reason]}.` : 'Nothing keeps it awake: it pauses when idle.';
  const next = status.next_run_at ? ` Next schedule: ${when(status.next_run_at)}.` : '';
  $('agent-status').textContent = `${why}${next} ${status.pending_approvals} approval(s) waiting.`;
  $('agent-status').dataset.reason = status.awake_reason ?? '';
}

async function loadChannels() {
  const channels = await api('GET', `${base()}/channels`);
  $('channels').replaceChildren(...channels.map((c) => el('tr', { dataset: { channel: c.kind, connected: String(c.connected) } },
    el('td', {}, c.label),
    el('td', {}, c.connected ? 'connected' : c.configured ? 'configured' : 'not set'),
    el('td', {}, c.token_set ? 'token set' : ''),
    el('td', {}, c.last_error ?? ''),
    el('td', { class: 'actions' }, c.configured || c.token_set ? button('Disconnect', 'disconnect', async () => {
      await api('DELETE', `${base()}/channels/${c.kind}`);
      await loadChannels();
    }, 'danger') : ''))));
}

async function loadPairings() {
  const pairings = await api('GET', `${base()}/pairings`);
  $('pairings').replaceChildren(...pairings.map((p) => el('tr', { dataset: { pairingId: p.id } },
    el('td', {}, p.channel), el('td', {}, `${p.sender_label} (${p.sender_id})`),
    el('td', { class: 'actions' },
      button('Approve', 'approve', async () => { await api('POST', `${base()}/pairings/${p.id}`, { approve: true }); await loadPairings(); }),
      button('Reject', 'reject', async () => { await api('POST', `${base()}/pairings/${p.id}`, { approve: false }); await loadPairings(); }, 'danger')))));
  $('pairings-state').textContent = pairings.length ? '' : 'Nobody waits to be let in.';
}

async function loadSchedules() {
  const schedules = await api('GET', `${base()}/schedules`);
  $('schedules').replaceChildren(...schedules.map((s) => el('tr', { dataset: { scheduleId: s.id } },
    el('td', {}, s.name), el('td', {}, s.cron ?? `once at ${when(s.at)}`), el('td', {}, s.message),
    el('td', {}, s.next_run_at ? `next ${when(s.next_run_at)}` : ''), el('td', {}, s.last_status ? `last: ${s.last_status}` : ''),
    el('td', { class: 'actions' },
      button('Run now', 'run', async () => { await api('POST', `${base()}/schedules/${s.id}/run`); }),
      button('Delete', 'delete', async () => { await api('DELETE', `${base()}/schedules/${s.id}`); await loadSchedules(); }, 'danger')))));
}

function approvalRow(a) {
  const answer = (decision) => async () => { await api('POST', `${base()}/approvals/${a.id}`, { decision }); await loadApprovals(); };
  return el('tr', { dataset: { approvalId: a.id, status: a.status } },
    el('td', {}, el('code', {}, a.command)), el('td', {}, a.status), el('td', {}, when(a.created_at)),
    el('td', { class: 'actions' }, ...(a.status === 'pending'
      ? [button('Allow once', 'allow', answer('allow_once')), button('Always', 'always', answer('allow_always')), button('Deny', 'deny', answer('deny'), 'danger')]
      : [a.decision ?? ''])));
}

async function loadApprovals() {
  const approvals = await api('GET', `${base()}/approvals`);
  $('approvals').replaceChildren(...approvals.slice(0, 20).map(approvalRow));
}

async function loadPolicy() {
  const policy = await api('GET', `${base()}/tool-policy`);
  for (const family of ['exec', 'web', 'browser']) $('tool-policy-form').elements[family].value = policy[family];
}

async function loadConfig() {
  const config = await api('GET', `${base()}/config`);
  $('config-view').textContent = JSON.stringify(config.config, null, 2);
  $('config-view').dataset.hash = config.hash;
  const rollback = config.last_rollback ? ` Last rollback ${when(config.last_rollback.at)}: ${config.last_rollback.reason}.` : '';
  const probation = config.rollback_deadline ? ` A change is on probation until ${when(config.rollback_deadline)}.` : '';
  $('config-state').textContent = `${config.valid ? 'Valid.' : 'Invalid!'}${probation}${rollback}`;
}

function follow() {
  feed?.close();
  feed = new EventSource(`${base()}/agent/events`);
  feed.addEventListener('approval', () => { loadApprovals().catch(() => {}); loadStatus().catch(() => {}); });
  feed.addEventListener('schedule_run', () => loadSchedules().catch(() => {}));
  feed.addEventListener('system_notification', (event) => { notify(JSON.parse(event.data).message, 'info'); loadConfig().catch(() => {}); });
}

export async function loadAgent(id) {
  instanceId = id;
  follow();
  await loadStatus();
  await Promise.all([loadChannels(), loadPairings(), loadSchedules(), loadApprovals(), loadPolicy(), loadConfig()]);
}

export function closeAgent() {
  feed?.close();
  feed = null;
}

$('channel-form').addEventListener('submit', guard(async (event) => {
  event.preventDefault();
  const form = event.target.elements;
  const body = { bot_token: form.bot_token.value };
  if (form.kind.value === 'slack') body.app_token = form.app_token.value;
  await api('PUT', `${base()}/channels/${form.kind.value}`, body);
  event.target.reset();
  await Promise.all([loadChannels(), loadStatus()]);
}));

$('whatsapp-link').addEventListener('click', guard(async () => {
  const login = await api('POST', `${base()}/channels/whatsapp/login`, {});
  $('whatsapp-state').textContent = login.message;
  if (login.qr_data_url) { $('whatsapp-qr').src = login.qr_data_url; $('whatsapp-qr').hidden = false; }
  for (let i = 0; i < 20 && instanceId; i++) {
    const waited = await api('GET', `${base()}/channels/whatsapp/login?timeout_ms=15000`);
    if (waited.connected) { $('whatsapp-state').textContent = waited.message; $('whatsapp-qr').hidden = true; await loadChannels(); return; }
    if (waited.qr_data_url) $('whatsapp-qr').src = waited.qr_data_url;
  }
}));

$('schedule-form').addEventListener('submit', guard(async (event) => {
  event.preventDefault();
  const form = event.target.elements;
  const when = form.when.value.trim();
  const body = { name: form.name.value, message: form.message.value };
  if (/^\d{4}-/.test(when)) body.at = new Date(when).toISOString(); else body.cron = when;
  await api('POST', `${base()}/schedules`, body);
  event.target.reset();
  await Promise.all([loadSchedules(), loadStatus()]);
}));

$('tool-policy-form').addEventListener('submit', guard(async (event) => {
  event.preventDefault();
  const form = event.target.elements;
  await api('PUT', `${base()}/tool-policy`, { exec: form.exec.value, web: form.web.value, browser: form.browser.value });
  notify('Tool policy saved.', 'info');
}));

$('config-form').addEventListener('submit', guard(async (event) => {
  event.preventDefault();
  const patch = JSON.parse(event.target.elements.patch.value);
  await api('PATCH', `${base()}/config`, patch);
  event.target.reset();
  await loadConfig();
}));

$('doctor-run').addEventListener('click', guard(async () => {
  const doctor = await api('GET', `${base()}/doctor`);
  $('doctor-view').textContent = doctor.findings.map((f) => `[${f.severity}] ${f.message}`).join('\n') || 'No findings.';
}));

$('gateway-restart').addEventListener('click', guard(async () => {
  $('config-state').textContent = 'Restarting the gateway…';
  const done = await api('POST', `${base()}/gateway/restart`);
  $('config-state').textContent = done.ready ? `Restarted in ${done.took_ms} ms.` : 'The gateway has not answered yet.';
}));
