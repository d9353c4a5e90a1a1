// Talking to ocaas from the browser: JSON calls with the session cookie and the CSRF token
// (every state-changing call sends X-CSRF-Token), errors as thrown {status, code, message},
// and a reader for text/event-stream responses.
let csrfToken = null;

export function setCsrf(token) { csrfToken = token || null; }

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const init = { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) };
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    // Browsers abort requests when the machine's interfaces change (Docker adding a sandbox's
    // veth on the same host does that); a read is safe to ask again.
    if (method !== 'GET') throw error;
    response = await fetch(path, init);
  }
  return decode(response);
}

async function decode(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  const value = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, value?.error ?? 'http_error', value?.message ?? `The server answered ${response.status}.`);
  return value;
}

/** POSTs `body` and calls onEvent(name, data) for each server-sent event until the stream ends. */
export async function postStream(path, body, onEvent) {
  const response = await fetch(path, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', 'X-CSRF-Token': csrfToken ?? '' },
    body: JSON.stringify(body),
  });
  if (!response.ok) return decode(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    }
  }
  return null;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '—';
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}
