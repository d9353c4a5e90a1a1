// /account: log in or register, then the dashboard — API keys here, instances and their
// chat, terminal and desktop in dashboard.js.
import { api, setCsrf, when, el } from '/static/api.js';
import { startDashboard, stopDashboard } from '/static/dashboard.js';
import { loadWebhooks } from '/static/webhooks.js';
import { loadOrgs } from '/static/orgs.js';

const $ = (id) => document.getElementById(id);

export function notify(message, kind = 'error') {
  const notice = $('notice');
  notice.textContent = message;
  notice.dataset.kind = kind;
  notice.hidden = !message;
}

async function showAccount(account) {
  setCsrf(account.csrf_token);
  $('auth').hidden = true;
  $('dashboard').hidden = false;
  $('whoami').hidden = false;
  $('user-email').textContent = account.email;
  notify('');
  await loadKeys();
  await loadAudit();
  await loadUsage();
  await loadWebhooks(guard);
  await loadOrgs(guard);
  await startDashboard(account);
}

function showLogin() {
  setCsrf(null);
  stopDashboard();
  $('auth').hidden = false;
  $('dashboard').hidden = true;
  $('whoami').hidden = true;
}

function formData(form) {
  return Object.fromEntries([...new FormData(form)].filter(([, v]) => v !== '').map(([k, v]) => [k, String(v).trim()]));
}

function guard(action) {
  return async (event) => {
    event?.preventDefault?.();
    try {
      await action(event);
    } catch (error) {
      notify(error.message || String(error));
    }
  };
}

$('login-form').addEventListener('submit', guard(async (event) => {
  await showAccount(await api('POST', '/api/account/login', formData(event.target)));
}));

$('register-form').addEventListener('submit', guard(async (event) => {
  await showAccount(await api('POST', '/api/account/register', formData(event.target)));
}));

$('logout').addEventListener('click', guard(async () => {
  await api('POST', '/api/account/logout');
  showLogin();
}));

async function loadKeys() {
  const keys = await api('GET', '/api/account/keys');
  $('keys').replaceChildren(...keys.map((key) => el('tr', { dataset: { keyId: key.id } },
    el('td', {}, key.name),
    el('td', {}, el('code', {}, `${key.prefix}…`)),
    el('td', { class: 'scopes' }, `${key.scopes ? key.scopes.join(', ') : 'everything'}${key.instance_id ? ` on ${key.instance_id.slice(0, 8)}…` : ''}${key.expires_at ? `, until ${when(key.expires_at)}` : ''}`),
    el('td', {}, when(key.created_at)),
    el('td', {}, when(key.last_used_at)),
    el('td', {}, el('button', { type: 'button', class: 'danger revoke', onclick: guard(async () => {
      if (!confirm(`Revoke the key “${key.name}”? Programs using it stop working.`)) return;
      await api('DELETE', `/api/account/keys/${key.id}`);
      await loadKeys();
    }) }, 'Revoke')),
  )));
}

// Model tokens this month, as the server's broker metered them.
async function loadUsage() {
  const usage = await api('GET', '/api/account/usage');
  const t = usage.totals;
  $('usage-summary').textContent = `This month: ${t.requests} model request(s), ${t.prompt_tokens} prompt + ${t.completion_tokens} completion tokens.`;
  $('usage').replaceChildren(...usage.days.map((d) => el('tr', { dataset: { day: d.day, model: d.model } },
    el('td', {}, d.day), el('td', {}, el('code', {}, d.model)), el('td', {}, String(d.requests)),
    el('td', {}, String(d.prompt_tokens)), el('td', {}, String(d.completion_tokens)))));
}

// The audit log: a page of events, and "Older" appends the next one.
let auditBefore = null;
async function loadAudit(more = false) {
  const query = more && auditBefore !== null ? `?limit=20&before=${auditBefore}` : '?limit=20';
  const page = await api('GET', `/api/account/audit${query}`);
  const rows = page.events.map((e) => el('tr', { dataset: { action: e.action } },
    el('td', {}, when(e.at)),
    el('td', {}, e.action.replaceAll('_', ' ')),
    el('td', {}, `${e.client_addr ?? '—'}${e.key_name ? ` · key “${e.key_name}”` : ''}`),
    el('td', {}, el('code', {}, e.target ?? '')),
  ));
  if (more) $('audit').append(...rows); else $('audit').replaceChildren(...rows);
  auditBefore = page.next_before;
  $('audit-more').hidden = page.next_before === null;
}
$('audit-more').addEventListener('click', guard(() => loadAudit(true)));

$('key-limits').addEventListener('toggle', guard(async () => {
  const instances = await api('GET', '/api/instances');
  $('key-instance').replaceChildren(el('option', { value: '' }, 'any'), ...instances.map((i) => el('option', { value: i.id }, i.name || i.sandbox_id)));
}));

$('create-key-form').addEventListener('submit', guard(async (event) => {
  const form = event.target;
  const body = { name: form.elements.name.value.trim() || undefined };
  const scopes = [...form.querySelectorAll('input[name=scope]:checked')].map((box) => box.value);
  if (scopes.length) body.scopes = scopes;
  if (form.elements.instance_id.value) body.instance_id = form.elements.instance_id.value;
  if (form.elements.expires_on.value) body.expires_at = new Date(`${form.elements.expires_on.value}T23:59:59Z`).toISOString();
  const created = await api('POST', '/api/account/keys', body);
  form.reset();
  $('new-key-secret').textContent = created.key;
  $('new-key').hidden = false;
  await loadKeys();
  await loadAudit();
  await loadUsage();
}));

$('copy-key').addEventListener('click', async () => {
  const secret = $('new-key-secret').textContent;
  try {
    await navigator.clipboard.writeText(secret);
  } catch {
    const range = document.createRange();
    range.selectNodeContents($('new-key-secret'));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand('copy');
  }
  $('copy-key').textContent = 'Copied';
  setTimeout(() => { $('copy-key').textContent = 'Copy'; }, 1500);
});

api('GET', '/api/account').then(showAccount, (error) => {
  if (error.status !== 401) notify(error.message);
  showLogin();
});
