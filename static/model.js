// The open instance's Model tab: the operator's model or the user's own provider and key
// (bring your own key). The key is write-only: the page only ever learns whether one is set.
import { api, el } from '/static/api.js';
import { notify } from '/static/account.js';

const $ = (id) => document.getElementById(id);
let instanceId = null;

function show(model) {
  $('model-state').textContent = model.provider === 'custom'
    ? `Your own provider: ${model.model} at ${model.base_url} (key ${model.api_key_set ? 'set' : 'missing'}).`
    : `The server's model${model.model ? `: ${model.model}` : ''}.`;
  $('model-state').dataset.provider = model.provider;
  const form = $('model-form');
  form.elements.provider.value = model.provider;
  form.elements.base_url.value = model.base_url ?? '';
  form.elements.model.value = model.provider === 'custom' ? model.model : '';
  form.elements.api_key.value = '';
  form.elements.api_key.placeholder = model.api_key_set ? 'Stored — leave empty to keep it' : 'sk-…';
}

function showLimits(limits) {
  const cap = limits.monthly_token_limit === null ? 'no cap' : `a cap of ${limits.monthly_token_limit}`;
  const plan = limits.account_allowance === null ? '' : ` The plan allows ${limits.account_allowance} tokens a month for the account (${limits.account_used_this_month} used).`;
  $('limits-state').textContent = `${limits.used_this_month} tokens used this month, ${cap}; resets on ${limits.resets_on}.${plan}`;
  $('limits-state').dataset.cap = String(limits.monthly_token_limit);
  $('limits-form').elements.monthly_token_limit.value = limits.monthly_token_limit ?? '';
}

export async function loadModel(id) {
  instanceId = id;
  show(await api('GET', `/api/instances/${id}/model`));
  showLimits(await api('GET', `/api/instances/${id}/limits`));
}

$('limits-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const raw = event.target.elements.monthly_token_limit.value;
  try {
    showLimits(await api('PUT', `/api/instances/${instanceId}/limits`, { monthly_token_limit: raw === '' ? null : Number(raw) }));
  } catch (error) {
    notify(error.message);
  }
});

$('model-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = Object.fromEntries([...new FormData(event.target)].filter(([, v]) => v !== ''));
  const body = data.provider === 'operator' ? { provider: 'operator' } : data;
  try {
    show(await api('PUT', `/api/instances/${instanceId}/model`, body));
    $('model-state').append(' ', el('strong', {}, 'Saved.'));
  } catch (error) {
    notify(error.message);
  }
});
