// The do-not-call list: search by number prefix, page through, add pasted numbers (with a note,
// for every task or one), delete an entry.

import { html, useCallback, useEffect, useRef, useState } from '../../vendor/htm-3.1.1-preact-standalone.module.js';
import { api, query } from '../api.js';
import { t } from '../i18n.js';
import { Modal, Notice, Pager, fmtInt } from '../ui.js';

const PER_PAGE = 20;

/** The numbers of pasted text: one a line (commas, semicolons and blanks also separate). */
export const pastedNumbers = (text) => text.split(/[\s,;]+/).map((n) => n.trim()).filter(Boolean);

export function DncList() {
  const [prefix, setPrefix] = useState('');
  const [page, setPage] = useState(1);
  const [list, setList] = useState(null);
  const [tasks, setTasks] = useState([]);
  const [error, setError] = useState('');
  const [info, setInfo] = useState('');
  const [deleting, setDeleting] = useState(null);
  const requests = useRef(0);

  const load = useCallback(async () => {
    const ticket = ++requests.current;
    try {
      const body = await api('GET', `/api/dnc${query({ page, perPage: PER_PAGE, number: prefix })}`);
      if (ticket === requests.current) setList(body); // an older answer never overwrites a newer one
    } catch (e) {
      if (ticket === requests.current) setError(e.message);
    }
  }, [page, prefix]);

  useEffect(() => { load(); }, [load]);
  useEffect(() => {
    api('GET', '/api/out_call_tasks?perPage=1000').then((body) => setTasks(body.data)).catch((e) => setError(e.message));
  }, []);

  const taskName = (id) => {
    const task = tasks.find((x) => Number(x.id) === Number(id));
    return task ? `#${id} ${task.group_name}` : `#${id}`;
  };

  const remove = async () => {
    const entry = deleting;
    setDeleting(null);
    setError('');
    try {
      await api('DELETE', `/api/dnc/${entry.id}`);
      setInfo(t('dnc.deleted', { number: entry.number }));
      load();
    } catch (e) {
      setError(e.message);
    }
  };

  return html`<section class="page dnc">
    <div class="page-head"><h2>${t('dnc.title')}</h2></div>
    <p class="muted">${t('dnc.intro')}</p>
    <${Notice}>${error}<//>
    <${Notice} kind="info">${info}<//>
    <div class="dnc-grid">
      <div class="card">
        <div class="toolbar">
          <input type="search" id="dnc-search" placeholder=${t('dnc.search')} value=${prefix}
            onInput=${(e) => { setPrefix(e.target.value.trim()); setPage(1); }} />
        </div>
        <div class="table-wrap">
          <table class="grid" id="dnc-table">
            <thead><tr>
              <th>${t('dnc.number')}</th><th>${t('dnc.scope')}</th><th>${t('dnc.note')}</th><th>${t('dnc.created_at')}</th><th></th>
            </tr></thead>
            <tbody>
              ${list && list.data.length === 0 ? html`<tr><td colspan="5" class="empty">${t('dnc.none')}</td></tr>` : null}
              ${list ? list.data.map((entry) => html`<tr key=${entry.id} data-dnc=${entry.number}>
                <td class="mono">${entry.number}</td>
                <td>${entry.task_id == null ? t('dnc.all_tasks') : taskName(entry.task_id)}</td>
                <td class="name">${entry.note}</td>
                <td class="time">${entry.created_at}</td>
                <td><button class="btn tiny danger act-delete" onClick=${() => setDeleting(entry)}>${t('tasks.delete')}</button></td>
              </tr>`) : null}
            </tbody>
          </table>
        </div>
        ${list ? html`<${Pager} page=${list.page} pageCount=${list.pageCount} rowCount=${list.rowCount} onPage=${setPage} />` : null}
      </div>
      <${AddEntries} tasks=${tasks} onAdded=${(message) => { setInfo(message); setError(''); load(); }} />
    </div>
    ${deleting ? html`<${Modal} title=${t('dnc.delete_title')} onClose=${() => setDeleting(null)}
      footer=${html`<button class="btn" onClick=${() => setDeleting(null)}>${t('common.cancel')}</button>
        <button class="btn danger" id="dnc-delete-confirm" onClick=${remove}>${t('tasks.delete')}</button>`}>
      <p>${t('dnc.delete_confirm', { number: deleting.number })}</p>
    <//>` : null}
  </section>`;
}

/** Paste numbers, an optional note and the scope; the answer counts what was added. */
function AddEntries({ tasks, onAdded }) {
  const [text, setText] = useState('');
  const [note, setNote] = useState('');
  const [scope, setScope] = useState('');
  const [error, setError] = useState('');
  const [sending, setSending] = useState(false);
  const numbers = pastedNumbers(text);

  const send = async (e) => {
    e.preventDefault();
    setError('');
    if (!numbers.length) return;
    const data = numbers.map((number) => ({
      number,
      ...(note ? { note } : {}),
      ...(scope ? { task_id: Number(scope) } : {}),
    }));
    setSending(true);
    try {
      const answer = await api('POST', '/api/dnc', { data });
      const counts = JSON.parse(answer.data);
      setText('');
      onAdded(t('dnc.added', { added: fmtInt(counts.added), duplicates: fmtInt(counts.duplicates) }));
    } catch (err) {
      setError(err.message);
    } finally {
      setSending(false);
    }
  };

  return html`<form class="card dnc-add" onSubmit=${send} novalidate>
    <h3>${t('dnc.add')}</h3>
    <${Notice}>${error}<//>
    <label for="dnc-numbers">${t('dnc.numbers')}</label>
    <textarea id="dnc-numbers" rows="8" placeholder=${'13800138000\n13800138001'} value=${text} onInput=${(e) => setText(e.target.value)}></textarea>
    <div class="hint">${t('dnc.numbers_hint', { n: fmtInt(numbers.length) })}</div>
    <label for="dnc-note">${t('dnc.note')}</label>
    <input id="dnc-note" value=${note} onInput=${(e) => setNote(e.target.value)} />
    <label for="dnc-scope">${t('dnc.scope')}</label>
    <select id="dnc-scope" value=${scope} onChange=${(e) => setScope(e.target.value)}>
      <option value="">${t('dnc.all_tasks')}</option>
      ${tasks.map((task) => html`<option value=${task.id}>#${task.id} ${task.group_name}</option>`)}
    </select>
    <div class="form-actions">
      <button class="btn primary" type="submit" id="dnc-add" disabled=${sending || !numbers.length}>${t('dnc.add')}</button>
    </div>
  </form>`;
}
