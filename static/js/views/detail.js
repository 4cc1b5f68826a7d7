// One task: live header (with the waiting state, pending retries and webhook deliveries), chart,
// causes, the numbers table (filters, uuid, recordings, each number's attempts), exports.

import { html, useCallback, useEffect, useRef, useState } from '../../vendor/htm-3.1.1-preact-standalone.module.js';
import { api, download, query, withToken } from '../api.js';
import { RateChart } from '../chart.js';
import { t } from '../i18n.js';
import * as live from '../live.js';
import { CAUSES, Copyable, Modal, NUMBER_STATUSES, Notice, NumberStatus, Pager, Progress, StatusBadge, fmtInt, fmtRate } from '../ui.js';

const PER_PAGE = 50;

export function TaskDetail({ id }) {
  const [task, setTask] = useState(null);
  const [stats, setStats] = useState(live.lastStats(id) || null);
  const [error, setError] = useState('');
  const [info, setInfo] = useState('');

  const loadTask = useCallback(() => api('GET', `/api/out_call_tasks/${id}`).then(setTask).catch((e) => setError(e.message)), [id]);

  useEffect(() => {
    loadTask();
    live.refresh(id).catch((e) => setError(e.message));
    let status = null;
    return live.subscribe(() => {
      const s = live.lastStats(id);
      if (!s) return;
      setStats(s);
      if (status && s.status !== status) loadTask();
      status = s.status;
    });
  }, [id]);

  const act = async (action) => {
    setError('');
    try {
      await api('PUT', '/api/out_call_tasks', { action, data: [String(id)] });
      await live.refresh(id);
      loadTask();
    } catch (e) {
      setError(e.message);
    }
  };

  const exportAs = async (format) => {
    setError('');
    try {
      const name = `${task ? task.group_name : `task-${id}`}.${format}`;
      await download(`/api/out_call_tasks/${id}/download${format === 'json' ? '' : `?format=${format}`}`, name);
      setInfo(t('detail.exported', { name }));
    } catch (e) {
      setError(e.message);
    }
  };

  const s = stats;
  const status = s ? s.status : task?.status;
  return html`<section class="page detail">
    <div class="page-head">
      <h2><a href="#/tasks" class="crumb">${t('nav.tasks')}</a> / <span id="task-name">${task ? task.group_name : `#${id}`}</span>
        ${status ? html` <${StatusBadge} status=${status} />` : null}</h2>
      <div class="head-actions">
        ${status === 'running'
          ? html`<button class="btn" id="detail-stop" onClick=${() => act('stop')}>■ ${t('tasks.stop')}</button>`
          : html`<button class="btn primary" id="detail-start" onClick=${() => act('start')}>▶ ${t('tasks.start')}</button>`}
        <a class="btn" href=${`#/tasks/${id}/edit`}>${t('tasks.edit')}</a>
        <a class="btn" href=${`#/tasks/${id}/import`}>${t('tasks.import')}</a>
        <span class="btn-group">
          <span class="muted">${t('detail.export')}</span>
          <button class="btn small" id="export-json" onClick=${() => exportAs('json')}>JSON</button>
          <button class="btn small" id="export-csv" onClick=${() => exportAs('csv')}>CSV</button>
          <button class="btn small" id="export-xlsx" onClick=${() => exportAs('xlsx')}>XLSX</button>
        </span>
      </div>
    </div>
    <${Notice}>${error}<//>
    <${Notice} kind="info">${info}<//>
    ${s ? html`<div class="stat-cards" id="live-header">
      ${[
        ['total', fmtInt(s.total)], ['init', fmtInt(s.init)], ['calling', fmtInt(s.calling)], ['done', fmtInt(s.done)],
        ['answered', fmtInt(s.answered)], ['caps', fmtRate(s.caps)], ['live', fmtInt(s.live)],
        ...(s.retry_pending != null ? [['retry_pending', fmtInt(s.retry_pending)]] : []),
      ].map(([k, v]) => html`<div class=${`stat stat-${k}`} data-stat=${k}><div class="stat-value">${v}</div><div class="stat-label">${t(`stats.${k}`)}</div></div>`)}
    </div>
    <${Waiting} stats=${s} />
    <${Webhooks} stats=${s} task=${task} />
    <div class="detail-progress"><${Progress} done=${s.done} total=${s.total} /></div>` : null}
    <div class="detail-grid">
      <div class="card">
        <h3>${t('chart.title')}</h3>
        <${RateChart} id=${id} />
      </div>
      <div class="card causes">
        <h3>${t('detail.causes')}</h3>
        <${Causes} causes=${s ? s.causes : {}} done=${s ? s.done : 0} />
      </div>
    </div>
    <${Numbers} id=${id} version=${s ? `${s.done}/${s.calling}/${s.total}/${s.status}` : ''} />
  </section>`;
}

/** Why a running task starts no call now, and until when. */
function Waiting({ stats }) {
  if (!stats.waiting || stats.status !== 'running') return null;
  return html`<div class="notice waiting" role="status" id="waiting-state" data-waiting=${stats.waiting}>
    ${t(`waiting.${stats.waiting}`, { until: stats.waiting_until || '—' })}</div>`;
}

/** The task's result webhooks: pending, delivered, failed, and the latest error. */
function Webhooks({ stats, task }) {
  const w = stats.webhooks;
  if (!w || (!task?.webhook_url && !w.pending && !w.delivered && !w.failed)) return null;
  return html`<div class="webhook-state" id="webhook-state">
    <span class="muted">${t('webhook.title')}</span>
    <span data-webhook="pending">${t('webhook.pending')} <b>${fmtInt(w.pending)}</b></span>
    <span data-webhook="delivered">${t('webhook.delivered')} <b>${fmtInt(w.delivered)}</b></span>
    <span data-webhook="failed" class=${w.failed ? 'warn' : ''}>${t('webhook.failed')} <b>${fmtInt(w.failed)}</b></span>
    ${w.last_error ? html`<span class="webhook-error" title=${w.last_error}>${t('webhook.last_error')}: ${w.last_error}</span>` : null}
  </div>`;
}

/** Every call of one number, from the attempts route. */
function Attempts({ id, number, onClose }) {
  const [rows, setRows] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    api('GET', `/api/out_call_tasks/${id}/numbers/${number.id}/attempts`).then((body) => setRows(body.data)).catch((e) => setError(e.message));
  }, [id, number.id]);
  return html`<${Modal} wide title=${t('attempts.title', { number: number.dest_number })} onClose=${onClose}
    footer=${html`<button class="btn" id="attempts-close" onClick=${onClose}>${t('common.close')}</button>`}>
    <${Notice}>${error}<//>
    ${rows ? html`<div class="table-wrap"><table class="grid" id="attempts-table">
      <thead><tr>
        <th class="num">#</th><th>${t('numbers.start')}</th><th>${t('numbers.answer')}</th><th>${t('numbers.end')}</th>
        <th>${t('numbers.cause')}</th><th>SIP</th><th class="num">${t('attempts.billsec')}</th><th>${t('numbers.dtmf')}</th><th>UUID</th>
      </tr></thead>
      <tbody>
        ${rows.length === 0 ? html`<tr><td colspan="9" class="empty">${t('attempts.none')}</td></tr>` : null}
        ${rows.map((a) => html`<tr key=${a.attempt} data-attempt=${a.attempt}>
          <td class="num">${a.attempt}</td><td class="time">${a.call_start_time}</td><td class="time">${a.call_answer_time}</td>
          <td class="time">${a.call_end_time}</td><td class="cause">${a.cause || t('attempts.alive')}</td><td class="mono">${a.sip_code}</td>
          <td class="num">${a.billsec}</td><td class="mono">${a.dtmf}</td><td class="uuid"><${Copyable} text=${a.uuid} /></td>
        </tr>`)}
      </tbody>
    </table></div>` : html`<p class="muted">${t('common.loading')}</p>`}
  <//>`;
}

function Causes({ causes, done }) {
  const entries = Object.entries(causes || {}).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return html`<p class="muted">${t('detail.no_causes')}</p>`;
  return html`<table class="cause-table" id="causes">
    ${entries.map(([cause, n]) => html`<tr key=${cause}>
      <td class="cause-name"><span class=${`dot cause-${cause}`}></span>${cause}<div class="sub">${t(`cause.${cause}`)}</div></td>
      <td class="cause-bar"><progress max=${Math.max(done, 1)} value=${n}></progress></td>
      <td class="num">${fmtInt(n)}</td>
      <td class="num muted">${done ? Math.round((n * 100) / done) : 0}%</td>
    </tr>`)}
  </table>`;
}

/** The numbers table; `version` changes when the task's stats do, so the page follows along. */
function Numbers({ id, version }) {
  const [filters, setFilters] = useState({ call_status: '', cause: '', dest_number: '' });
  const [page, setPage] = useState(1);
  const [list, setList] = useState(null);
  const [error, setError] = useState('');
  const [attemptsOf, setAttemptsOf] = useState(null);
  const lastLoad = useRef(0);
  const timer = useRef(null);
  const requests = useRef(0);

  const load = useCallback(async () => {
    lastLoad.current = Date.now();
    const ticket = ++requests.current;
    try {
      const body = await api('GET', `/api/out_call_tasks/${id}/numbers${query({ page, perPage: PER_PAGE, ...filters })}`);
      if (ticket !== requests.current) return; // an older answer never overwrites a newer one
      setList(body);
      setError('');
    } catch (e) {
      setError(e.message);
    }
  }, [id, page, filters]);

  useEffect(() => { load(); }, [load]);
  // Follow the stream, at most once a second.
  useEffect(() => {
    if (!version) return;
    clearTimeout(timer.current);
    timer.current = setTimeout(load, Math.max(0, 1000 - (Date.now() - lastLoad.current)));
    return () => clearTimeout(timer.current);
  }, [version]);

  const setFilter = (k, v) => { setFilters({ ...filters, [k]: v }); setPage(1); };

  return html`<div class="card numbers">
    <div class="toolbar">
      <h3>${t('numbers.title')}</h3>
      <span class="spacer"></span>
      <select id="filter-status" value=${filters.call_status} onChange=${(e) => setFilter('call_status', e.target.value)}>
        <option value="">${t('numbers.all_statuses')}</option>
        ${NUMBER_STATUSES.map((s) => html`<option value=${s}>${t(`nstatus.${s}`)}</option>`)}
      </select>
      <select id="filter-cause" value=${filters.cause} onChange=${(e) => setFilter('cause', e.target.value)}>
        <option value="">${t('numbers.all_causes')}</option>
        ${CAUSES.map((c) => html`<option value=${c}>${c}</option>`)}
      </select>
      <input type="search" id="filter-prefix" placeholder=${t('numbers.prefix')} value=${filters.dest_number}
        onInput=${(e) => setFilter('dest_number', e.target.value.trim())} />
    </div>
    <${Notice}>${error}<//>
    <div class="table-wrap">
      <table class="grid numbers-table">
        <thead><tr>
          <th class="num">ID</th><th>${t('numbers.dest_number')}</th><th>${t('numbers.external_id')}</th>
          <th>${t('numbers.status')}</th><th>${t('numbers.cause')}</th><th>${t('numbers.dtmf')}</th>
          <th>${t('numbers.start')}</th><th>${t('numbers.answer')}</th><th>${t('numbers.end')}</th>
          <th>UUID</th><th>${t('numbers.recording')}</th><th>${t('numbers.attempts')}</th>
        </tr></thead>
        <tbody>
          ${list && list.data.length === 0 ? html`<tr><td colspan="12" class="empty">${t('numbers.none')}</td></tr>` : null}
          ${list ? list.data.map((n) => html`<tr key=${n.id} data-number=${n.dest_number}>
            <td class="num">${n.id}</td>
            <td class="mono">${n.dest_number}</td>
            <td>${n.external_id}</td>
            <td><${NumberStatus} status=${n.call_status} /></td>
            <td class="cause">${n.cause}</td>
            <td class="mono">${n.dtmf}</td>
            <td class="time">${n.call_start_time}</td>
            <td class="time">${n.call_answer_time}</td>
            <td class="time">${n.call_end_time}</td>
            <td class="uuid"><${Copyable} text=${n.uuid} /></td>
            <td class="rec">${n.record_path
              ? html`<audio controls preload="none" src=${withToken(`/api/out_call_tasks/${id}/numbers/${n.id}/recording`)}></audio>`
              : html`<span class="muted">—</span>`}</td>
            <td>${n.outbound_call === '0'
              ? html`<button class="btn tiny act-attempts" onClick=${() => setAttemptsOf(n)}>${t('numbers.attempts_open')}</button>`
              : html`<span class="muted">—</span>`}</td>
          </tr>`) : null}
        </tbody>
      </table>
    </div>
    ${list ? html`<${Pager} page=${list.page} pageCount=${list.pageCount} rowCount=${list.rowCount} onPage=${setPage} />` : null}
    ${attemptsOf ? html`<${Attempts} id=${id} number=${attemptsOf} onClose=${() => setAttemptsOf(null)} />` : null}
  </div>`;
}
