// The task list: search, status filter, paging, live progress, start/stop (one or many), clone,
// delete.

import { html, useCallback, useEffect, useRef, useState } from '../../vendor/htm-3.1.1-preact-standalone.module.js';
import { api, query } from '../api.js';
import { t } from '../i18n.js';
import * as live from '../live.js';
import { Modal, Notice, Pager, Progress, STATUSES, StatusBadge, fmtRate, go } from '../ui.js';

const PER_PAGE = 20;

/** The list row with what the stream knows now laid over it. */
function withLive(task) {
  const s = live.lastStats(task.id);
  if (!s) return { ...task, caps: null, live: null };
  return { ...task, status: s.status, total: s.total, done: s.done, caps: s.caps, live: s.live };
}

export function TaskList() {
  const [name, setName] = useState('');
  const [status, setStatus] = useState('');
  const [page, setPage] = useState(1);
  const [list, setList] = useState(null);
  const [selected, setSelected] = useState(new Set());
  const [error, setError] = useState('');
  const [info, setInfo] = useState('');
  const [cloning, setCloning] = useState(null);
  const [deleting, setDeleting] = useState(null);
  const [, setTick] = useState(0);
  const requests = useRef(0);

  const load = useCallback(async () => {
    try {
      const ticket = ++requests.current;
      const body = await api('GET', `/api/out_call_tasks${query({ page, perPage: PER_PAGE, name, status })}`);
      if (ticket === requests.current) setList(body); // an older answer never overwrites a newer one
    } catch (e) {
      if (e.status !== 401) setError(e.message);
    }
  }, [page, name, status]);

  useEffect(() => { load(); }, [load]);
  // Live rows: redraw on every stats event; reload the list when a status changes, so that the
  // status filter stays true.
  useEffect(() => {
    let statuses = '';
    return live.subscribe(() => {
      setTick((n) => n + 1);
      if (!list) return;
      const now = list.data.map((r) => live.lastStats(r.id)?.status || r.status).join();
      if (statuses && now !== statuses) load();
      statuses = now;
    });
  }, [list, load]);

  const act = async (action, ids) => {
    setError('');
    try {
      await api('PUT', '/api/out_call_tasks', { action, data: ids.map(String) });
      setInfo(t(action === 'start' ? 'tasks.started' : 'tasks.stopped', { n: ids.length }));
      setSelected(new Set());
      await Promise.all(ids.map((id) => live.refresh(id).catch(() => {})));
      load();
    } catch (e) {
      setError(e.message);
    }
  };

  const rows = list ? list.data.map(withLive) : [];
  const allSelected = rows.length > 0 && rows.every((r) => selected.has(r.id));
  const toggle = (id) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id); else next.add(id);
    setSelected(next);
  };

  return html`<section class="page">
    <div class="page-head">
      <h2>${t('tasks.title')}</h2>
      <button class="btn primary" id="new-task" onClick=${() => go('#/tasks/new')}>＋ ${t('tasks.new')}</button>
    </div>
    <div class="toolbar">
      <input type="search" id="task-search" placeholder=${t('tasks.search')} value=${name}
        onInput=${(e) => { setName(e.target.value); setPage(1); }} />
      <select id="status-filter" value=${status} onChange=${(e) => { setStatus(e.target.value); setPage(1); }}>
        <option value="">${t('tasks.all_statuses')}</option>
        ${STATUSES.map((s) => html`<option value=${s}>${t(`status.${s}`)}</option>`)}
      </select>
      <span class="spacer"></span>
      <span class="muted">${t('tasks.selected', { n: selected.size })}</span>
      <button class="btn" id="bulk-start" disabled=${!selected.size} onClick=${() => act('start', [...selected])}>▶ ${t('tasks.start_selected')}</button>
      <button class="btn" id="bulk-stop" disabled=${!selected.size} onClick=${() => act('stop', [...selected])}>■ ${t('tasks.stop_selected')}</button>
    </div>
    <${Notice}>${error}<//>
    <${Notice} kind="info">${info}<//>
    <div class="table-wrap">
      <table class="grid tasks">
        <thead><tr>
          <th class="check"><input type="checkbox" aria-label=${t('tasks.select_all')} checked=${allSelected}
            onChange=${() => setSelected(allSelected ? new Set() : new Set(rows.map((r) => r.id)))} /></th>
          <th class="num">ID</th><th>${t('task.group_name')}</th><th>${t('tasks.status')}</th>
          <th class="progress-col">${t('tasks.progress')}</th><th class="num">${t('tasks.caps')}</th><th class="num">${t('tasks.live')}</th>
          <th class="num">${t('tasks.max_caps')}</th><th>${t('tasks.created')}</th><th class="actions">${t('tasks.actions')}</th>
        </tr></thead>
        <tbody>
          ${list && rows.length === 0 ? html`<tr><td colspan="10" class="empty">${t('tasks.none')}</td></tr>` : null}
          ${rows.map((r) => html`<tr key=${r.id} data-task=${r.id} class=${selected.has(r.id) ? 'selected' : ''}>
            <td class="check"><input type="checkbox" aria-label=${r.group_name} checked=${selected.has(r.id)} onChange=${() => toggle(r.id)} /></td>
            <td class="num">${r.id}</td>
            <td class="name"><a href=${`#/tasks/${r.id}`}>${r.group_name}</a>${r.description ? html`<div class="sub">${r.description}</div>` : null}</td>
            <td><${StatusBadge} status=${r.status} /></td>
            <td class="progress-col"><${Progress} done=${r.done} total=${r.total} /></td>
            <td class="num">${r.status === 'running' ? fmtRate(r.caps) : '—'}</td>
            <td class="num">${r.status === 'running' && r.live != null ? r.live : '—'}</td>
            <td class="num">${r.max_caps}</td>
            <td class="time">${r.created_at}</td>
            <td class="actions"><div class="row-actions">
              ${r.status === 'running'
                ? html`<button class="btn small act-stop" onClick=${() => act('stop', [r.id])}>■ ${t('tasks.stop')}</button>`
                : html`<button class="btn small act-start" onClick=${() => act('start', [r.id])}>▶ ${t('tasks.start')}</button>`}
              <a class="btn small" href=${`#/tasks/${r.id}/edit`}>${t('tasks.edit')}</a>
              <a class="btn small" href=${`#/tasks/${r.id}/import`}>${t('tasks.import')}</a>
              <button class="btn small act-clone" onClick=${() => setCloning(r)}>${t('tasks.clone')}</button>
              <button class="btn small danger act-delete" onClick=${() => setDeleting(r)}>${t('tasks.delete')}</button>
            </div></td>
          </tr>`)}
        </tbody>
      </table>
    </div>
    ${list ? html`<${Pager} page=${list.page} pageCount=${list.pageCount} rowCount=${list.rowCount} onPage=${setPage} />` : null}
    ${cloning ? html`<${CloneDialog} task=${cloning} onClose=${() => setCloning(null)}
        onDone=${(id) => { setCloning(null); setInfo(t('tasks.cloned', { id })); load(); }} />` : null}
    ${deleting ? html`<${DeleteDialog} task=${deleting} onClose=${() => setDeleting(null)}
        onDone=${() => { setDeleting(null); setInfo(t('tasks.deleted', { name: deleting.group_name })); load(); }} />` : null}
  </section>`;
}

function CloneDialog({ task, onClose, onDone }) {
  const [name, setName] = useState(`${task.group_name} (2)`);
  const [withNumbers, setWithNumbers] = useState(true);
  const [error, setError] = useState('');
  const submit = async () => {
    try {
      const body = await api('POST', '/api/out_call_tasks/clone', {
        id: Number(task.id), group_name: name, description: task.description, is_clone_numbers: withNumbers,
      });
      onDone(body.data);
    } catch (e) {
      setError(e.message);
    }
  };
  return html`<${Modal} title=${t('clone.title', { name: task.group_name })} onClose=${onClose}
    footer=${html`<button class="btn" onClick=${onClose}>${t('common.cancel')}</button>
      <button class="btn primary" id="clone-confirm" onClick=${submit}>${t('tasks.clone')}</button>`}>
    <label>${t('clone.name')}<input id="clone-name" value=${name} onInput=${(e) => setName(e.target.value)} /></label>
    <label class="check-line"><input type="checkbox" id="clone-numbers" checked=${withNumbers}
      onChange=${(e) => setWithNumbers(e.target.checked)} /> ${t('clone.with_numbers')}</label>
    <${Notice}>${error}<//>
  <//>`;
}

function DeleteDialog({ task, onClose, onDone }) {
  const [error, setError] = useState('');
  const submit = async () => {
    try {
      await api('DELETE', `/api/out_call_tasks/${task.id}`);
      onDone();
    } catch (e) {
      setError(e.message);
    }
  };
  return html`<${Modal} title=${t('delete.title')} onClose=${onClose}
    footer=${html`<button class="btn" onClick=${onClose}>${t('common.cancel')}</button>
      <button class="btn danger" id="delete-confirm" onClick=${submit}>${t('tasks.delete')}</button>`}>
    <p>${t('delete.confirm', { name: task.group_name, total: task.total })}</p>
    ${task.status === 'running' ? html`<p class="warn">${t('delete.running')}</p>` : null}
    <${Notice}>${error}<//>
  <//>`;
}
