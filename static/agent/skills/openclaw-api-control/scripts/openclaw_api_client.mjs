#!/usr/bin/env node
// openclaw_api_client.mjs — zero-dependency client and CLI for the ocaas API at {{ORIGIN}}.
// Node >= 20. Configuration: OPENCLAW_API_KEY (required), OPENCLAW_API_BASE_URL (default
// {{ORIGIN}}/api; "/api" is appended when missing), OPENCLAW_INSTANCE_ID (default: the first
// ready instance). Every command prints JSON; failures print the server's message and exit 1.
import { readFile, writeFile, readdir, stat } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { basename, join, posix, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export // `?from=…&to=…` (RFC 3339) of a usage period, or nothing for the server's default (this month).
function period(from, to) {
  const query = new URLSearchParams();
  if (from !== undefined) query.set('from', from);
  if (to !== undefined) query.set('to', to);
  return query.size ? `?${query}` : '';
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiBase(raw = process.env.OPENCLAW_API_BASE_URL || '{{ORIGIN}}/api') {
  const trimmed = raw.replace(/\/+$/, '');
  return trimmed.endsWith('/api') ? trimmed : `${trimmed}/api`;
}

export class Client {
  constructor({ apiKey = process.env.OPENCLAW_API_KEY, baseUrl, instanceId = process.env.OPENCLAW_INSTANCE_ID } = {}) {
    if (!apiKey) throw new ApiError(0, 'missing_api_key', 'Set OPENCLAW_API_KEY to an API key (create one at /account).');
    this.apiKey = apiKey;
    this.base = apiBase(baseUrl);
    this.instanceId = instanceId || null;
  }

  async request(method, path, { json, query, body, headers = {}, raw = false } = {}) {
    const url = new URL(this.base + path);
    for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    const init = { method, headers: { Authorization: `Bearer ${this.apiKey}`, ...headers } };
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    } else if (body !== undefined) {
      init.body = body;
    }
    const response = await fetch(url, init);
    if (!response.ok) {
      let error = {};
      try { error = await response.json(); } catch { /* not JSON */ }
      throw new ApiError(response.status, error.error || 'http_error', error.message || `${method} ${path} answered ${response.status}`);
    }
    if (raw) return response;
    if (response.status === 204) return null;
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  // Meta and instances
  root() { return this.request('GET', ''); }
  listInstances() { return this.request('GET', '/instances'); }
  createInstance({ inviteCode, name, fromSnapshot, orgId } = {}) {
    const json = {};
    if (orgId) json.org_id = orgId;
    if (inviteCode) json.invite_code = inviteCode;
    if (name) json.name = name;
    if (fromSnapshot) json.from_snapshot = fromSnapshot;
    return this.request('POST', '/instances', { json });
  }
  async instance(id) {
    if (id || this.instanceId) return id || this.instanceId;
    const ready = (await this.listInstances()).find((i) => i.status === 'ready');
    if (!ready) throw new ApiError(0, 'no_ready_instance', 'No ready instance: create one with `instances create` or set OPENCLAW_INSTANCE_ID.');
    this.instanceId = ready.id;
    return ready.id;
  }
  async getInstance(id) { return this.request('GET', `/instances/${await this.instance(id)}`); }
  async deleteInstance(id) { return this.request('DELETE', `/instances/${await this.instance(id)}`); }
  async lifecycle(action, id) { return this.request('POST', `/instances/${await this.instance(id)}/${action}`); }
  /** Pins the instance awake (true) or lets the idle policy pause and stop it again (false). */
  async keepAwake(id, on) { return this.request('PATCH', `/instances/${await this.instance(id)}`, { json: { keep_awake: on } }); }
  async status(id) { return this.request('GET', `/instances/${await this.instance(id)}/status`); }
  async logs(id, tail) { return this.request('GET', `/instances/${await this.instance(id)}/logs${tail !== undefined ? `?tail=${tail}` : ''}`); }
  async vncUrl(id) { return this.request('GET', `/instances/${await this.instance(id)}/vnc-url`); }
  async limits(id) { return this.request('GET', `/instances/${await this.instance(id)}/limits`); }
  async setLimit(id, tokens) { return this.request('PUT', `/instances/${await this.instance(id)}/limits`, { json: { monthly_token_limit: tokens } }); }
  async model(id) { return this.request('GET', `/instances/${await this.instance(id)}/model`); }
  async setModel(id, { provider, baseUrl, model, apiKey }) {
    const json = { provider, ...(baseUrl ? { base_url: baseUrl } : {}), ...(model ? { model } : {}), ...(apiKey ? { api_key: apiKey } : {}) };
    return this.request('PUT', `/instances/${await this.instance(id)}/model`, { json });
  }
  // Snapshots
  async snapshots(id) { return this.request('GET', `/instances/${await this.instance(id)}/snapshots`); }
  async takeSnapshot(id, name) { return this.request('POST', `/instances/${await this.instance(id)}/snapshots`, { json: name ? { name } : {} }); }
  async deleteSnapshot(id, snapshotId) { return this.request('DELETE', `/instances/${await this.instance(id)}/snapshots/${snapshotId}`); }
  async restore(id, snapshotId) { return this.request('POST', `/instances/${await this.instance(id)}/restore`, { json: { snapshot_id: snapshotId } }); }
  /** Saves the snapshot's archive (a .tar.gz) to outPath. */
  async downloadSnapshot(id, snapshotId, outPath) {
    const response = await this.request('GET', `/instances/${await this.instance(id)}/snapshots/${snapshotId}/download`, { raw: true });
    await pipeline(Readable.fromWeb(response.body), createWriteStream(outPath));
    return { snapshot_id: snapshotId, saved_to: outPath, size: (await stat(outPath)).size };
  }
  async usage(id, { from, to } = {}) { return this.request('GET', `/instances/${await this.instance(id)}/usage${period(from, to)}`); }

  // Account
  async keys() { return this.request('GET', '/account/keys'); }
  /** A new key (its secret in `key`, shown once); scopes/instanceId/expiresAt limit it. */
  async createKey({ name, scopes, instanceId, expiresAt } = {}) {
    return this.request('POST', '/account/keys', { json: { name, ...(scopes ? { scopes } : {}), ...(instanceId ? { instance_id: instanceId } : {}), ...(expiresAt ? { expires_at: expiresAt } : {}) } });
  }
  async revokeKey(keyId) { return this.request('DELETE', `/account/keys/${keyId}`); }

  // Organisations
  async orgs() { return this.request('GET', '/orgs'); }
  async createOrg(name) { return this.request('POST', '/orgs', { json: { name } }); }
  async orgMembers(orgId) { return this.request('GET', `/orgs/${orgId}/members`); }
  async orgUsage(orgId, { from, to } = {}) { return this.request('GET', `/orgs/${orgId}/usage${period(from, to)}`); }
  async invite(orgId, email, role) { return this.request('POST', `/orgs/${orgId}/invitations`, { json: { email, role } }); }
  async setRole(orgId, userId, role) { return this.request('PATCH', `/orgs/${orgId}/members/${userId}`, { json: { role } }); }
  async removeMember(orgId, userId) { return this.request('DELETE', `/orgs/${orgId}/members/${userId}`); }
  async myInvitations() { return this.request('GET', '/account/invitations'); }
  async acceptInvitation(invitationId) { return this.request('POST', `/account/invitations/${invitationId}/accept`); }

  // Webhooks (Standard Webhooks: verify each delivery with the endpoint's `secret`)
  async webhooks() { return this.request('GET', '/account/webhooks'); }
  /** A new endpoint; its signing secret is in `secret`, shown once. */
  async createWebhook({ url, events, description } = {}) {
    return this.request('POST', '/account/webhooks', { json: { url, ...(events ? { events } : {}), ...(description ? { description } : {}) } });
  }
  async updateWebhook(webhookId, change) { return this.request('PATCH', `/account/webhooks/${webhookId}`, { json: change }); }
  async deleteWebhook(webhookId) { return this.request('DELETE', `/account/webhooks/${webhookId}`); }
  async rotateWebhookSecret(webhookId) { return this.request('POST', `/account/webhooks/${webhookId}/rotate-secret`); }
  async webhookDeliveries(webhookId) { return this.request('GET', `/account/webhooks/${webhookId}/deliveries`); }
  async testWebhook(webhookId) { return this.request('POST', `/account/webhooks/${webhookId}/test`); }
  async accountUsage({ from, to } = {}) { return this.request('GET', `/account/usage${period(from, to)}`); }
  async audit({ before, limit } = {}) {
    const query = new URLSearchParams();
    if (before !== undefined) query.set('before', before);
    if (limit !== undefined) query.set('limit', limit);
    const suffix = query.size ? `?${query}` : '';
    return this.request('GET', `/account/audit${suffix}`);
  }

  // Chat
  async chatSessions() { return this.request('GET', `/instances/${await this.instance()}/chat/sessions`); }
  async createChatSession(title) { return this.request('POST', `/instances/${await this.instance()}/chat/sessions`, { json: title ? { title } : {} }); }
  async sendMessage(message, sessionId) {
    return this.request('POST', `/instances/${await this.instance()}/chat`, { json: { message, ...(sessionId ? { session_id: sessionId } : {}) } });
  }
  /** Streams a turn; calls onEvent({event, data}) per SSE event and resolves with all of them. */
  async streamMessage(message, sessionId, onEvent = () => {}) {
    const response = await this.request('POST', `/instances/${await this.instance()}/chat/stream`, {
      json: { message, ...(sessionId ? { session_id: sessionId } : {}) }, raw: true, headers: { Accept: 'text/event-stream' },
    });
    return readSse(response, onEvent);
  }
  /** Stops the turn running in the session (default: the most recent one); the message, `aborted`. */
  async abortTurn(sessionId) {
    return this.request('POST', `/instances/${await this.instance()}/chat/abort`, { json: sessionId ? { session_id: sessionId } : {} });
  }
  async messages({ sessionId, tail, after, limit } = {}) {
    return this.request('GET', `/instances/${await this.instance()}/chat/messages`, {
      query: { session_id: sessionId, tail: tail ? 'true' : undefined, after, limit },
    });
  }
  /** Follows the persisted event feed; stops after maxEvents events or timeoutMs. */
  async events({ sessionId, after, maxEvents = Infinity, timeoutMs } = {}, onEvent = () => {}) {
    const url = new URL(`${this.base}/instances/${await this.instance()}/chat/events`);
    if (sessionId) url.searchParams.set('session_id', sessionId);
    if (after) url.searchParams.set('after', after);
    return this.follow(url, { maxEvents, timeoutMs }, onEvent);
  }
  /** Reads an event stream at url until maxEvents events or timeoutMs; resolves with them. */
  async follow(url, { maxEvents = Infinity, timeoutMs } = {}, onEvent = () => {}) {
    const controller = new AbortController();
    const timer = timeoutMs ? setTimeout(() => controller.abort(), timeoutMs) : null;
    const seen = [];
    try {
      const response = await fetch(url, { headers: { Authorization: `Bearer ${this.apiKey}`, Accept: 'text/event-stream' }, signal: controller.signal });
      if (!response.ok) {
        const error = await response.json().catch(() => ({}));
        throw new ApiError(response.status, error.error || 'http_error', error.message || `events answered ${response.status}`);
      }
      await readSse(response, (event) => {
        seen.push(event);
        onEvent(event);
        if (seen.length >= maxEvents) controller.abort();
      });
    } catch (error) {
      if (error.name !== 'AbortError') throw error;
    } finally {
      if (timer) clearTimeout(timer);
    }
    return seen;
  }

  // The always-on agent
  async agentPath(suffix) { return `/instances/${await this.instance()}/${suffix}`; }
  async agentStatus() { return this.request('GET', await this.agentPath('agent')); }
  /** The agent feed: approval requests, schedule runs, notices (one SSE event each). */
  async agentEvents({ maxEvents, timeoutMs } = {}, onEvent = () => {}) {
    return this.follow(new URL(`${this.base}${await this.agentPath('agent/events')}`), { maxEvents, timeoutMs }, onEvent);
  }
  async config() { return this.request('GET', await this.agentPath('config')); }
  /** A JSON merge patch of openclaw.json; rolled back by the server if the gateway does not come back. */
  async patchConfig(patch, ifMatch) {
    return this.request('PATCH', await this.agentPath('config'), { json: patch, headers: ifMatch ? { 'If-Match': ifMatch } : {} });
  }
  async configSchema() { return this.request('GET', await this.agentPath('config/schema')); }
  async doctor() { return this.request('GET', await this.agentPath('doctor')); }
  async restartGateway() { return this.request('POST', await this.agentPath('gateway/restart')); }
  async channels() { return this.request('GET', await this.agentPath('channels')); }
  async setChannel(kind, { botToken, appToken, dmPolicy }) {
    return this.request('PUT', await this.agentPath(`channels/${kind}`), { json: { bot_token: botToken, ...(appToken ? { app_token: appToken } : {}), ...(dmPolicy ? { dm_policy: dmPolicy } : {}) } });
  }
  async removeChannel(kind) { return this.request('DELETE', await this.agentPath(`channels/${kind}`)); }
  async whatsappLogin(force = false) { return this.request('POST', await this.agentPath('channels/whatsapp/login'), { json: { force } }); }
  async whatsappWait(timeoutMs = 10000) { return this.request('GET', await this.agentPath('channels/whatsapp/login'), { query: { timeout_ms: timeoutMs } }); }
  async pairings() { return this.request('GET', await this.agentPath('pairings')); }
  async answerPairing(pairingId, approve) { return this.request('POST', await this.agentPath(`pairings/${pairingId}`), { json: { approve } }); }
  async schedules() { return this.request('GET', await this.agentPath('schedules')); }
  async createSchedule(schedule) { return this.request('POST', await this.agentPath('schedules'), { json: schedule }); }
  async updateSchedule(scheduleId, changes) { return this.request('PATCH', await this.agentPath(`schedules/${scheduleId}`), { json: changes }); }
  async deleteSchedule(scheduleId) { return this.request('DELETE', await this.agentPath(`schedules/${scheduleId}`)); }
  async runSchedule(scheduleId) { return this.request('POST', await this.agentPath(`schedules/${scheduleId}/run`)); }
  async scheduleRuns(scheduleId) { return this.request('GET', await this.agentPath(`schedules/${scheduleId}/runs`)); }
  async approvals(pending = false) { return this.request('GET', await this.agentPath('approvals'), { query: { pending: pending ? 'true' : undefined } }); }
  async answerApproval(approvalId, decision) { return this.request('POST', await this.agentPath(`approvals/${approvalId}`), { json: { decision } }); }
  async toolPolicy() { return this.request('GET', await this.agentPath('tool-policy')); }
  async setToolPolicy(policy) { return this.request('PUT', await this.agentPath('tool-policy'), { json: policy }); }

  // Files
  async files(path = '/workspace') { return this.request('GET', `/instances/${await this.instance()}/files`, { query: { path } }); }
  async readFile(path) { return this.request('GET', `/instances/${await this.instance()}/files/read`, { query: { path } }); }
  async writeFile(path, content) { return this.request('POST', `/instances/${await this.instance()}/files/write`, { json: { path, content } }); }
  async mkdir(path) { return this.request('POST', `/instances/${await this.instance()}/files/mkdir`, { json: { path } }); }
  async rename(from, to) { return this.request('POST', `/instances/${await this.instance()}/files/rename`, { json: { from, to } }); }
  async remove(path, recursive = false) { return this.request('POST', `/instances/${await this.instance()}/files/delete`, { json: { path, recursive } }); }
  /** Uploads a local file (any size, binary or text) into targetDir. */
  async upload(localPath, targetDir, fileName = basename(localPath)) {
    const form = new FormData();
    form.set('targetDir', targetDir);
    form.set('fileName', fileName);
    form.set('file', new Blob([await readFile(localPath)]), fileName);
    return this.request('POST', `/instances/${await this.instance()}/files/upload`, { body: form });
  }
  /** Mirrors a local directory tree under dest. */
  async uploadTree(src, dest) {
    const uploaded = [];
    await this.mkdir(dest);
    for (const entry of await readdir(src, { withFileTypes: true })) {
      const local = join(src, entry.name);
      const remote = posix.join(dest, entry.name);
      if (entry.isDirectory()) uploaded.push(...(await this.uploadTree(local, remote)));
      else if (entry.isFile()) uploaded.push(await this.upload(local, dest, entry.name));
    }
    return uploaded;
  }
  /** Downloads a file to outPath (or returns its bytes when outPath is omitted). */
  async download(path, outPath) {
    const response = await this.request('GET', `/instances/${await this.instance()}/files/download`, { query: { path }, raw: true });
    if (!outPath) return Buffer.from(await response.arrayBuffer());
    await pipeline(Readable.fromWeb(response.body), createWriteStream(outPath));
    return { path, saved_to: outPath, size: (await stat(outPath)).size };
  }

  // Commands
  async exec(command, { timeoutMs, cwd, env } = {}) {
    const json = { command };
    if (timeoutMs) json.timeout_ms = Number(timeoutMs);
    if (cwd) json.cwd = cwd;
    if (env) json.env = env;
    return this.request('POST', `/instances/${await this.instance()}/terminal/exec`, { json });
  }
}

/** Parses a text/event-stream body into {event, id, data} objects (data JSON-decoded when it can be). */
export async function readSse(response, onEvent) {
  const events = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      const event = { event: 'message', id: undefined, data: '' };
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (!line || line.startsWith(':')) continue;
        const at = line.indexOf(':');
        const field = at === -1 ? line : line.slice(0, at);
        const value = at === -1 ? '' : line.slice(at + 1).replace(/^ /, '');
        if (field === 'event') event.event = value;
        else if (field === 'id') event.id = value;
        else if (field === 'data') data.push(value);
      }
      if (!data.length) continue;
      event.data = data.join('\n');
      try { event.data = JSON.parse(event.data); } catch { /* plain text */ }
      events.push(event);
      onEvent(event);
    }
  }
  return events;
}

function parseArgs(argv) {
  const positional = [];
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg.startsWith('--')) {
      const [name, inline] = arg.slice(2).split(/=(.*)/s);
      if (inline !== undefined) flags[name] = inline;
      else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) flags[name] = argv[++i];
      else flags[name] = true;
    } else positional.push(arg);
  }
  return { positional, flags };
}

const USAGE = `usage: openclaw_api_client.mjs <command> [flags]   (global: --instance ID, --base-url URL)
  root
  account audit [--limit N] [--before ID]
  account keys | create-key [--name N] [--scopes chat,files:read] [--key-instance ID] [--expires-at T] | revoke-key --key K
  orgs list | create --name N | members --org O | usage --org O [--from T] [--to T] | invite --org O --email E --role admin|member|viewer
       set-role --org O --user U --role R | remove --org O --user U | invitations | accept --invitation I
  webhooks list | create --url U [--events a,b] [--description D] | disable|enable|delete|rotate|deliveries|test --webhook W
  instances list | create [--invite-code C] [--name N] [--from-snapshot S] [--org O] | get | status | reboot | shutdown | start | pause | resume | delete | vnc-url
  instances keep-awake --on true|false
  instances upgrade
  snapshots list | create [--name N] | delete --snapshot S | download --snapshot S --out F | restore --snapshot S
            logs [--tail N]
  chat sessions | new-session [--title T] | send [--session S] --message M [--stream] | abort [--session S]
       tail [--session S] [--limit N] | messages [--session S] [--after ID] [--limit N]
       events [--session S] [--after ID] [--max-events N] [--timeout-ms MS]
  files list [--path P] | read --path P | write --path P (--content C | --from-file F) | mkdir --path P
        upload --src FILE --dest DIR [--name N] | upload-tree --src DIR --dest /workspace/x
        rename --from A --to B | delete --path P [--recursive] | download --path P [--out FILE]
  terminal exec --command C [--timeout-ms N] [--cwd DIR]
  agent status | events [--max-events N] [--timeout-ms MS] | doctor | restart
  config get | schema | patch --json '{"logging":{"level":"debug"}}' [--if-match HASH]
  channels list | set --kind telegram|discord|slack --bot-token T [--app-token A] [--dm-policy P] | remove --kind K
           whatsapp-login [--force] | whatsapp-wait [--timeout-ms N]
  pairings list | approve --pairing P | reject --pairing P
  schedules list | create --name N (--cron "0 8 * * *" | --at 2026-12-24T08:00:00Z) --message M
            update --schedule S [--name N] [--cron C | --at T] [--message M] [--enabled true|false]
            delete --schedule S | run --schedule S | runs --schedule S
  approvals list [--pending] | answer --approval A --decision allow_once|allow_always|deny
  tools get | set --exec allow|ask|deny --web allow|deny --browser allow|deny`;

function need(flags, name) {
  if (flags[name] === undefined || flags[name] === true) throw new ApiError(0, 'usage', `--${name} is required.\n${USAGE}`);
  return flags[name];
}

const print = (value) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
const printLine = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

export async function main(argv = process.argv.slice(2)) {
  const { positional: [group, action], flags } = parseArgs(argv);
  if (!group || group === 'help' || flags.help) return print({ usage: USAGE });
  const client = new Client({ baseUrl: flags['base-url'], instanceId: flags.instance });
  const id = flags.instance;
  switch (`${group} ${action ?? ''}`.trim()) {
    case 'root': return print(await client.root());
    case 'account keys': return print(await client.keys());
    case 'account create-key':
      return print(await client.createKey({ name: flags.name, scopes: flags.scopes ? String(flags.scopes).split(',') : undefined, instanceId: flags['key-instance'], expiresAt: flags['expires-at'] }));
    case 'account revoke-key': return print((await client.revokeKey(need(flags, 'key'))) ?? { revoked: flags.key });
    case 'account usage': return print(await client.accountUsage({ from: flags.from, to: flags.to }));
    case 'orgs list': return print(await client.orgs());
    case 'orgs create': return print(await client.createOrg(need(flags, 'name')));
    case 'orgs members': return print(await client.orgMembers(need(flags, 'org')));
    case 'orgs usage': return print(await client.orgUsage(need(flags, 'org'), { from: flags.from, to: flags.to }));
    case 'orgs invite': return print(await client.invite(need(flags, 'org'), need(flags, 'email'), need(flags, 'role')));
    case 'orgs set-role': return print(await client.setRole(need(flags, 'org'), need(flags, 'user'), need(flags, 'role')));
    case 'orgs remove': return print((await client.removeMember(need(flags, 'org'), need(flags, 'user'))) ?? { removed: flags.user });
    case 'orgs invitations': return print(await client.myInvitations());
    case 'orgs accept': return print(await client.acceptInvitation(need(flags, 'invitation')));
    case 'webhooks list': return print(await client.webhooks());
    case 'webhooks create':
      return print(await client.createWebhook({ url: need(flags, 'url'), events: flags.events ? String(flags.events).split(',') : undefined, description: flags.description }));
    case 'webhooks disable': return print(await client.updateWebhook(need(flags, 'webhook'), { disabled: true }));
    case 'webhooks enable': return print(await client.updateWebhook(need(flags, 'webhook'), { disabled: false }));
    case 'webhooks delete': return print((await client.deleteWebhook(need(flags, 'webhook'))) ?? { deleted: flags.webhook });
    case 'webhooks rotate': return print(await client.rotateWebhookSecret(need(flags, 'webhook')));
    case 'webhooks deliveries': return print(await client.webhookDeliveries(need(flags, 'webhook')));
    case 'webhooks test': return print(await client.testWebhook(need(flags, 'webhook')));
    case 'instances limits': return print(await client.limits(id));
    case 'instances set-limit': return print(await client.setLimit(id, flags['monthly-tokens'] === 'none' ? null : Number(need(flags, 'monthly-tokens'))));
    case 'instances model': return print(await client.model(id));
    case 'instances set-model': return print(await client.setModel(id, { provider: need(flags, 'provider'), baseUrl: flags['provider-url'], model: flags.model, apiKey: flags['api-key'] }));
    case 'instances usage': return print(await client.usage(id, { from: flags.from, to: flags.to }));
    case 'account audit': return print(await client.audit({ before: flags.before, limit: flags.limit }));
    case 'instances list': return print(await client.listInstances());
    case 'instances create': return print(await client.createInstance({ inviteCode: flags['invite-code'], name: flags.name, fromSnapshot: flags['from-snapshot'], orgId: flags.org }));
    case 'instances upgrade': return print(await client.lifecycle('upgrade', id));
    case 'snapshots list': return print(await client.snapshots(id));
    case 'snapshots create': return print(await client.takeSnapshot(id, flags.name));
    case 'snapshots delete': return print((await client.deleteSnapshot(id, need(flags, 'snapshot'))) ?? { deleted: flags.snapshot });
    case 'snapshots download': return print(await client.downloadSnapshot(id, need(flags, 'snapshot'), need(flags, 'out')));
    case 'snapshots restore': return print(await client.restore(id, need(flags, 'snapshot')));
    case 'instances get': return print(await client.getInstance(id));
    case 'instances status': return print(await client.status(id));
    case 'instances reboot': case 'instances shutdown': case 'instances start':
    case 'instances pause': case 'instances resume': return print(await client.lifecycle(action, id));
    case 'instances keep-awake': return print(await client.keepAwake(id, need(flags, 'on') !== 'false'));
    case 'instances delete': return print((await client.deleteInstance(id)) ?? { deleted: await client.instance(id) });
    case 'instances vnc-url': return print(await client.vncUrl(id));
    case 'instances logs': return print(await client.logs(id, flags.tail));
    case 'chat sessions': return print(await client.chatSessions());
    case 'chat new-session': return print(await client.createChatSession(flags.title));
    case 'chat abort': return print(await client.abortTurn(flags.session));
    case 'chat send':
      // Streamed: one JSON line per event, tool steps (`tool`: start, update, result) among them.
      if (flags.stream) return void (await client.streamMessage(need(flags, 'message'), flags.session, printLine));
      return print(await client.sendMessage(need(flags, 'message'), flags.session));
    case 'chat tail': return print(await client.messages({ sessionId: flags.session, tail: true, limit: flags.limit ?? 20 }));
    case 'chat messages': return print(await client.messages({ sessionId: flags.session, after: flags.after, limit: flags.limit }));
    case 'chat events':
      return void (await client.events({ sessionId: flags.session, after: flags.after, maxEvents: Number(flags['max-events'] ?? Infinity), timeoutMs: Number(flags['timeout-ms'] ?? 0) }, printLine));
    case 'agent status': return print(await client.agentStatus());
    case 'agent events':
      return void (await client.agentEvents({ maxEvents: Number(flags['max-events'] ?? Infinity), timeoutMs: Number(flags['timeout-ms'] ?? 0) }, printLine));
    case 'agent doctor': return print(await client.doctor());
    case 'agent restart': return print(await client.restartGateway());
    case 'config get': return print(await client.config());
    case 'config schema': return print(await client.configSchema());
    case 'config patch': return print(await client.patchConfig(JSON.parse(need(flags, 'json')), flags['if-match']));
    case 'channels list': return print(await client.channels());
    case 'channels set':
      return print(await client.setChannel(need(flags, 'kind'), { botToken: need(flags, 'bot-token'), appToken: flags['app-token'], dmPolicy: flags['dm-policy'] }));
    case 'channels remove': return print((await client.removeChannel(need(flags, 'kind'))) ?? { removed: flags.kind });
    case 'channels whatsapp-login': return print(await client.whatsappLogin(Boolean(flags.force)));
    case 'channels whatsapp-wait': return print(await client.whatsappWait(Number(flags['timeout-ms'] ?? 10000)));
    case 'pairings list': return print(await client.pairings());
    case 'pairings approve': case 'pairings reject':
      return print((await client.answerPairing(need(flags, 'pairing'), action === 'approve')) ?? { [`${action}d`]: flags.pairing });
    case 'schedules list': return print(await client.schedules());
    case 'schedules create':
      return print(await client.createSchedule({ name: need(flags, 'name'), message: need(flags, 'message'), ...(flags.at ? { at: flags.at } : { cron: need(flags, 'cron') }) }));
    case 'schedules update': {
      const changes = {};
      for (const key of ['name', 'cron', 'at', 'message']) if (typeof flags[key] === 'string') changes[key] = flags[key];
      if (flags.enabled !== undefined) changes.enabled = flags.enabled !== 'false';
      return print(await client.updateSchedule(need(flags, 'schedule'), changes));
    }
    case 'schedules delete': return print((await client.deleteSchedule(need(flags, 'schedule'))) ?? { deleted: flags.schedule });
    case 'schedules run': return print(await client.runSchedule(need(flags, 'schedule')));
    case 'schedules runs': return print(await client.scheduleRuns(need(flags, 'schedule')));
    case 'approvals list': return print(await client.approvals(Boolean(flags.pending)));
    case 'approvals answer': return print(await client.answerApproval(need(flags, 'approval'), need(flags, 'decision')));
    case 'tools get': return print(await client.toolPolicy());
    case 'tools set': return print(await client.setToolPolicy({ exec: need(flags, 'exec'), web: need(flags, 'web'), browser: need(flags, 'browser') }));
    case 'files list': return print(await client.files(flags.path ?? '/workspace'));
    case 'files read': return print(await client.readFile(need(flags, 'path')));
    case 'files write': {
      const content = flags['from-file'] ? await readFile(flags['from-file'], 'utf8') : need(flags, 'content');
      return print(await client.writeFile(need(flags, 'path'), content));
    }
    case 'files mkdir': return print(await client.mkdir(need(flags, 'path')));
    case 'files upload': return print(await client.upload(need(flags, 'src'), need(flags, 'dest'), flags.name));
    case 'files upload-tree': return print(await client.uploadTree(need(flags, 'src'), need(flags, 'dest')));
    case 'files rename': return print(await client.rename(need(flags, 'from'), need(flags, 'to')));
    case 'files delete': return print(await client.remove(need(flags, 'path'), Boolean(flags.recursive)));
    case 'files download': {
      const path = need(flags, 'path');
      if (flags.out) return print(await client.download(path, flags.out));
      return void process.stdout.write(await client.download(path));
    }
    case 'terminal exec': return print(await client.exec(need(flags, 'command'), { timeoutMs: flags['timeout-ms'], cwd: flags.cwd }));
    default: throw new ApiError(0, 'usage', `Unknown command \`${group} ${action ?? ''}\`.\n${USAGE}`);
  }
}

const invokedDirectly = process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (invokedDirectly) {
  main().catch((error) => {
    const body = { error: error.code || 'client_error', message: error.cause ? `${error.message}: ${error.cause.message || error.cause}` : error.message, ...(error.status ? { status: error.status } : {}) };
    process.stderr.write(`${JSON.stringify(body)}\n`);
    process.exit(1);
  });
}
