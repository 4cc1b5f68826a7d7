// One task: live header, chart, causes, the numbers table (filters, uuid, recordings), exports.

import { html, useCallback, useEffect, useRef, useState } from '../../vendor/htm-3.1.1-preact-standalone.module.js';
import { api, download, query, withToken } from '../api.js';
import { RateChart } from '../chart.js';
import { t } from '../i18n.js';
import * as live from '../live.js';
import { CAUSES, Copyable, NUMBER_STATUSES, Notice, NumberStatus, Pager, Progress, StatusBadge, fmtInt, fmtRate } from '../ui.js';

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
      ].map(([k, v]) => html`<div class=${`stat stat-${k}`} data-stat=${k}><div class="stat-value">${v}</div><div class="stat-label">${t(`stats.${k}`)}</div></div>`)}
    </div>
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
          <th>UUID</th><th>${t('numbers.recording')}</th>
        </tr></thead>
        <tbody>
          ${list && list.data.length === 0 ? html`<tr><td colspan="11" class="empty">${t('numbers.none')}</td></tr>` : null}
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
          </tr>`) : null}
        </tbody>
      </table>
    </div>
    ${list ? html`<${Pager} page=${list.page} pageCount=${list.pageCount} rowCount=${list.rowCount} onPage=${setPage} />` : null}
  </div>`;
}
