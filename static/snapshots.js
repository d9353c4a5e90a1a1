// The open instance's Snapshots tab: take one, download, restore (a safety snapshot is taken
// first by the server), clone into a new instance, delete; and upgrade to the server's image.
import { api, el } from '/static/api.js';
import { notify } from '/static/account.js';

const $ = (id) => document.getElementById(id);
let instanceId = null;
const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;

function row(snapshot) {
  const id = snapshot.id;
  const act = (label, run, cls = 'secondary') => el('button', { type: 'button', class: cls, dataset: { action: label.toLowerCase() }, onclick: async () => {
    try { await run(); await loadSnapshots(instanceId); } catch (error) { notify(error.message); }
  } }, label);
  const ready = snapshot.status === 'ready';
  return el('tr', { dataset: { snapshotId: id, kind: snapshot.kind } },
    el('td', {}, snapshot.name || '—'),
    el('td', {}, snapshot.kind),
    el('td', {}, new Date(snapshot.created_at).toLocaleString()),
    el('td', {}, ready ? mib(snapshot.size_bytes) : snapshot.status),
    el('td', { class: 'actions' },
      ready ? el('a', { class: 'button secondary', href: `/api/instances/${instanceId}/snapshots/${id}/download`, download: '' }, 'Download') : '',
      ready ? act('Restore', async () => {
        if (confirm('Replace the workspace and the agent\'s state with this snapshot? (A safety snapshot is taken first.)')) {
          await api('POST', `/api/instances/${instanceId}/restore`, { snapshot_id: id });
          $('snapshots-state').textContent = 'Restoring…';
        }
      }) : '',
      ready ? act('Clone', () => api('POST', '/api/instances', { from_snapshot: id, name: `${snapshot.name || 'clone'} (clone)` })) : '',
      act('Delete', () => api('DELETE', `/api/instances/${instanceId}/snapshots/${id}`), 'danger')));
}

export async function loadSnapshots(id) {
  instanceId = id;
  const snapshots = await api('GET', `/api/instances/${id}/snapshots`);
  if (instanceId !== id) return;
  $('snapshots').replaceChildren(...snapshots.map(row));
  $('snapshots-state').textContent = snapshots.length ? `${snapshots.length} snapshot(s).` : 'No snapshots yet.';
}

$('snapshot-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = event.target.elements.name.value.trim();
  $('snapshots-state').textContent = 'Taking a snapshot…';
  try {
    await api('POST', `/api/instances/${instanceId}/snapshots`, name ? { name } : {});
    event.target.reset();
    await loadSnapshots(instanceId);
  } catch (error) {
    notify(error.message);
  }
});

$('upgrade-instance').addEventListener('click', async () => {
  try {
    await api('POST', `/api/instances/${instanceId}/upgrade`);
    $('snapshots-state').textContent = 'Upgrading: it rolls back by itself if the new image fails.';
  } catch (error) {
    notify(error.message);
  }
});
