// The Webhooks card of /account: endpoints (add, test, rotate the secret, disable, delete) and
// each one's delivery log with what the receiver answered.
import { api, when, el } from '/static/api.js';

const $ = (id) => document.getElementById(id);
let guarded = (action) => action;

function showSecret(secret) {
  $('webhook-secret-value').textContent = secret;
  $('webhook-secret').hidden = false;
}

async function showDeliveries(hook) {
  const deliveries = await api('GET', `/api/account/webhooks/${hook.id}/deliveries`);
  $('webhook-log-title').textContent = `Deliveries to ${hook.url}`;
  $('webhook-deliveries').replaceChildren(...deliveries.map((d) => {
    const last = d.log.at(-1);
    const answer = last ? (last.status_code !== null ? `HTTP ${last.status_code}` : last.error) : 'not tried yet';
    return el('tr', { dataset: { deliveryId: d.id, status: d.status } },
      el('td', {}, when(d.created_at)), el('td', {}, el('code', {}, d.event_type)), el('td', {}, d.status),
      el('td', {}, String(d.attempts)), el('td', { class: 'answer' }, answer));
  }));
  $('webhook-log').hidden = false;
}

function action(label, className, run) {
  return el('button', { type: 'button', class: `secondary ${className}`, onclick: guarded(run) }, label);
}

export async function loadWebhooks(guard) {
  guarded = guard ?? guarded;
  $('mcp-url').textContent = `${location.origin}/mcp`;
  const hooks = await api('GET', '/api/account/webhooks');
  $('webhooks').replaceChildren(...hooks.map((hook) => el('tr', { dataset: { webhookId: hook.id } },
    el('td', {}, el('code', {}, hook.url)),
    el('td', { class: 'scopes' }, hook.events.join(', ')),
    el('td', {}, hook.disabled ? 'disabled' : 'active'),
    el('td', {},
      action('Deliveries', 'deliveries', () => showDeliveries(hook)),
      action('Send test', 'test', async () => {
        await api('POST', `/api/account/webhooks/${hook.id}/test`);
        await showDeliveries(hook);
      }),
      action('Rotate secret', 'rotate', async () => {
        showSecret((await api('POST', `/api/account/webhooks/${hook.id}/rotate-secret`)).secret);
        await loadWebhooks();
      }),
      action(hook.disabled ? 'Enable' : 'Disable', 'toggle', async () => {
        await api('PATCH', `/api/account/webhooks/${hook.id}`, { disabled: !hook.disabled });
        await loadWebhooks();
      }),
      el('button', { type: 'button', class: 'danger delete', onclick: guarded(async () => {
        if (!confirm(`Delete the endpoint ${hook.url}? Its queued deliveries go with it.`)) return;
        await api('DELETE', `/api/account/webhooks/${hook.id}`);
        $('webhook-log').hidden = true;
        await loadWebhooks();
      }) }, 'Delete')),
  )));
}

$('webhook-form').addEventListener('submit', (event) => guarded(async () => {
  const form = event.target;
  const events = [...form.querySelectorAll('input[name=event]:checked')].map((box) => box.value);
  const created = await api('POST', '/api/account/webhooks', { url: form.elements.url.value.trim(), events });
  form.elements.url.value = '';
  showSecret(created.secret);
  await loadWebhooks();
})(event));
