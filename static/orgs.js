// The Organisations card of /account: invitations to you (accept, decline), your organisations,
// and for the one opened its members (roles, removal) and invitations (owners and admins).
// The instance form's "whose" list offers the organisations you may create instances for.
import { api, el } from '/static/api.js';

const $ = (id) => document.getElementById(id);
let guarded = (action) => action;
let opened = null;

function button(label, className, run, kind = 'secondary') {
  return el('button', { type: 'button', class: `${kind} ${className}`, onclick: guarded(run) }, label);
}

async function loadInvitations() {
  const invitations = await api('GET', '/api/account/invitations');
  $('my-invitations').replaceChildren(...invitations.map((inv) => el('p', { class: 'invitation', dataset: { invitationId: inv.id } },
    `You are invited to “${inv.org_name}” as ${inv.role}. `,
    button('Accept', 'accept', async () => {
      await api('POST', `/api/account/invitations/${inv.id}/accept`);
      await loadOrgs();
    }, ''),
    ' ',
    button('Decline', 'decline', async () => {
      await api('DELETE', `/api/account/invitations/${inv.id}`);
      await loadOrgs();
    }))));
}

async function openOrg(org) {
  opened = org;
  $('org-title').textContent = `${org.name} — you are ${org.role}`;
  const members = await api('GET', `/api/orgs/${org.id}/members`);
  const t = (await api('GET', `/api/orgs/${org.id}/usage`)).totals;
  const allowance = org.monthly_tokens === null ? 'no limit' : `${org.monthly_tokens} allowed`;
  $('org-usage').textContent = `This month: ${t.requests} model request(s), ${t.prompt_tokens + t.completion_tokens} tokens (${allowance}); ${org.instances} of ${org.max_instances} instance(s).`;
  const manages = ['owner', 'admin'].includes(org.role);
  $('org-members').replaceChildren(...members.map((m) => el('tr', { dataset: { userId: m.user_id, role: m.role } },
    el('td', {}, m.email), el('td', { class: 'role' }, m.role),
    el('td', {}, manages && m.role !== 'owner'
      ? button('Remove', 'remove', async () => {
        if (!confirm(`Remove ${m.email} from ${org.name}?`)) return;
        await api('DELETE', `/api/orgs/${org.id}/members/${m.user_id}`);
        await openOrg(org);
      }, 'danger')
      : ''))));
  $('invite-form').hidden = !manages;
  const invitations = manages ? await api('GET', `/api/orgs/${org.id}/invitations`) : [];
  $('org-invitations').replaceChildren(...invitations.map((inv) => el('li', { dataset: { invitationId: inv.id } },
    `${inv.email} (${inv.role}), open until ${new Date(inv.expires_at).toLocaleDateString()} `,
    button('Withdraw', 'withdraw', async () => {
      await api('DELETE', `/api/orgs/${org.id}/invitations/${inv.id}`);
      await openOrg(org);
    }))));
  $('org-panel').hidden = false;
}

export async function loadOrgs(guard) {
  guarded = guard ?? guarded;
  await loadInvitations();
  const orgs = await api('GET', '/api/orgs');
  $('orgs').replaceChildren(...orgs.map((org) => el('tr', { dataset: { orgId: org.id } },
    el('td', {}, org.name), el('td', { class: 'role' }, org.role), el('td', {}, `${org.instances} of ${org.max_instances}`),
    el('td', {}, button('Open', 'open', () => openOrg(org))))));
  $('instance-org').replaceChildren(el('option', { value: '' }, 'Mine'),
    ...orgs.filter((o) => ['owner', 'admin'].includes(o.role)).map((o) => el('option', { value: o.id }, o.name)));
  if (opened) {
    const again = orgs.find((o) => o.id === opened.id);
    if (again) await openOrg(again); else $('org-panel').hidden = true;
  }
}

$('org-form').addEventListener('submit', (event) => guarded(async () => {
  await api('POST', '/api/orgs', { name: event.target.elements.name.value.trim() });
  event.target.reset();
  await loadOrgs();
})(event));

$('invite-form').addEventListener('submit', (event) => guarded(async () => {
  const form = event.target;
  await api('POST', `/api/orgs/${opened.id}/invitations`, { email: form.elements.email.value.trim(), role: form.elements.role.value });
  form.elements.email.value = '';
  await openOrg(opened);
})(event));
