// The REST API as the page uses it: the token, the vendor's envelope, errors, uploads, downloads.

const TOKEN_KEY = 'outcall.token';
const listeners = new Set();

export const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

/** Called with a message key when the session ends (logout, or a 401 from the server). */
export function onSessionEnd(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function endSession(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  for (const fn of listeners) fn(reason);
}

/** An API error: HTTP status and the server's message (which names the field at fault). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorOf(response) {
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.message) message = body.message;
  } catch { /* not JSON */ }
  return new ApiError(response.status, message);
}

function authHeaders(extra = {}) {
  return { 'X-XTRA-AUTH-ID': token(), ...extra };
}

/** A JSON request; resolves to the parsed body, rejects with ApiError. A 401 ends the session. */
export async function api(method, path, body) {
  const init = { method, headers: authHeaders() };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, String(e.message || e));
  }
  if (response.status === 401) {
    endSession('session_expired');
    throw await errorOf(response);
  }
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

export async function logIn(login, password) {
  const response = await fetch('/api/sessions', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ login, password }),
  });
  if (!response.ok) throw await errorOf(response);
  const body = await response.json();
  sessionStorage.setItem(TOKEN_KEY, body.token);
  return body;
}

export async function logOut() {
  try {
    await fetch('/api/sessions', { method: 'DELETE', headers: authHeaders() });
  } finally {
    endSession('logged_out');
  }
}

export const query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
};

/** A URL that carries the token in its query: only for `<audio>` and EventSource routes. */
export const withToken = (path) => `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token())}`;

/**
 * A multipart POST through XMLHttpRequest, so that upload progress can be shown.
 * `onProgress(fraction)`; resolves to the parsed JSON body, rejects with ApiError.
 */
export function upload(path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('X-XTRA-AUTH-ID', token());
    xhr.responseType = 'text';
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 401) endSession('session_expired');
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, (body && body.message) || `HTTP ${xhr.status}`));
    };
    xhr.onerror = () => reject(new ApiError(0, 'network error'));
    xhr.send(formData);
  });
}

/** Fetches with the auth header and saves the answer as a file, through an object URL. */
export async function download(path, filename) {
  const response = await fetch(path, { headers: authHeaders() });
  if (response.status === 401) endSession('session_expired');
  if (!response.ok) throw await errorOf(response);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
