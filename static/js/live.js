// Live progress: one EventSource on /api/events shared by every screen. It keeps each task's last
// stats and, for the chart, a 10-minute history of per-second rates accumulated here.

import { api, endSession, token, withToken } from './api.js';

const HISTORY_SECONDS = 600;
const stats = new Map(); // task id → last stats object
const history = new Map(); // task id → [{t, started, answered, failed}] (rates per second)
const baselines = new Map(); // task id → the reading the next rate is measured from
const subscribers = new Set();
let source = null;
let retry = null;
let connected = false;

export const lastStats = (id) => stats.get(String(id));
export const historyOf = (id) => history.get(String(id)) || [];
export const isConnected = () => connected;

/** `fn()` is called after every change; returns the unsubscribe function. */
export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

const notify = () => { for (const fn of subscribers) fn(); };

/** Records a stats object (from the stream or from GET …/stats). */
export function record(s) {
  const id = String(s.id);
  if (s.deleted) {
    stats.delete(id);
    history.delete(id);
    baselines.delete(id);
    notify();
    return;
  }
  stats.set(id, s);
  // A rate needs a second or so between two readings: a reading right after another (a refresh
  // next to a stream event) only moves the latest values, not the chart.
  const now = Date.now() / 1000;
  const started = s.calling + s.done;
  const base = baselines.get(id);
  if (!base) {
    baselines.set(id, { t: now, started, answered: s.answered, done: s.done });
  } else if (now - base.t >= 0.9) {
    const dt = now - base.t;
    const answered = Math.max(s.answered - base.answered, 0);
    const finished = Math.max(s.done - base.done, 0);
    const points = history.get(id) || [];
    points.push({
      t: now,
      started: Math.max(started - base.started, 0) / dt,
      answered: answered / dt,
      failed: Math.max(finished - answered, 0) / dt,
    });
    while (points.length && points[0].t < now - HISTORY_SECONDS) points.shift();
    history.set(id, points);
    baselines.set(id, { t: now, started, answered: s.answered, done: s.done });
  }
  notify();
}

/** Fetches one task's stats now (the stream sends only changes). */
export async function refresh(id) {
  const body = await api('GET', `/api/out_call_tasks/${id}/stats`);
  record(body.data);
  return body.data;
}

function open() {
  if (!token()) return;
  source = new EventSource(withToken('/api/events'));
  source.addEventListener('open', () => { connected = true; notify(); });
  source.addEventListener('task', (e) => {
    try { record(JSON.parse(e.data)); } catch { /* ignore a malformed event */ }
  });
  source.addEventListener('error', () => {
    connected = false;
    notify();
    // The browser reconnects by itself while the stream is merely cut; a refused reconnection
    // (401 after the token expired, or a server that is still down) closes it for good.
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      checkAndReopen();
    }
  });
}

async function checkAndReopen() {
  clearTimeout(retry);
  retry = setTimeout(async () => {
    if (!token()) return;
    try {
      const response = await fetch('/api/out_call_tasks?perPage=1', { headers: { 'X-XTRA-AUTH-ID': token() } });
      if (response.status === 401) { endSession('session_expired'); return; }
    } catch { /* the server is still down: try again */ }
    open();
  }, 2000);
}

export function start() {
  if (!source) open();
}

export function stop() {
  clearTimeout(retry);
  if (source) source.close();
  source = null;
  connected = false;
  stats.clear();
  history.clear();
  baselines.clear();
}
