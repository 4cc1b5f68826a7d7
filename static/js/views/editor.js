// The task editor, grouped as the vendor groups the fields. The API's 4xx message is shown next
// to the field it names.

import { html, useEffect, useState } from '../../vendor/htm-3.1.1-preact-standalone.module.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { Notice, go } from '../ui.js';
import { MediaPicker } from './media.js';

const DEFAULTS = {
  group_name: '', description: '', cid_number: '', cid_name: '', context: 'context-1', dest_context: '',
  calling_time: 30, max_caps: 1, max_concurrency: 1, auto_dial: 0, task_start_time: '',
  disable_ring_back: 1, auto_record: 0,
  group_confirm_key: '', group_confirm_read_timeout: '', group_confirm_file: '',
  action: '', data: '',
};

const GROUPS = [
  ['basic', ['group_name', 'description', 'cid_number', 'cid_name', 'context', 'dest_context']],
  ['call', ['calling_time', 'max_caps', 'max_concurrency', 'auto_dial', 'task_start_time', 'disable_ring_back', 'auto_record']],
  ['confirm', ['group_confirm_key', 'group_confirm_read_timeout', 'group_confirm_file']],
  ['action', ['action', 'data']],
];
const FLAGS = new Set(['auto_dial', 'disable_ring_back', 'auto_record']);
const NUMBERS = { calling_time: [5, 300, 1], max_caps: [0.001, 10000, 'any'], max_concurrency: [1, 100000, 1], group_confirm_read_timeout: [1, 600, 1] };

/** The field an API message names: its first word, when that is one of the form's fields. */
export function fieldOf(message) {
  const m = /^([a-z_]+)\b/.exec(message || '');
  return m && m[1] in DEFAULTS ? m[1] : '';
}

export function TaskEditor({ id }) {
  const [form, setForm] = useState(id ? null : { ...DEFAULTS });
  const [original, setOriginal] = useState(null);
  const [errors, setErrors] = useState({});
  const [general, setGeneral] = useState('');
  const [saving, setSaving] = useState(false);

  useEffect(() => {
    if (!id) return;
    api('GET', `/api/out_call_tasks/${id}`).then((task) => {
      const values = {};
      for (const k of Object.keys(DEFAULTS)) values[k] = task[k] ?? DEFAULTS[k];
      setForm(values);
      setOriginal(values);
    }).catch((e) => setGeneral(e.message));
  }, [id]);

  if (!form) return html`<section class="page"><${Notice}>${general}<//><p class="muted">${t('common.loading')}</p></section>`;

  const set = (k, v) => {
    setForm({ ...form, [k]: v });
    if (errors[k]) setErrors({ ...errors, [k]: '' });
  };

  const save = async (e) => {
    e.preventDefault();
    setErrors({});
    setGeneral('');
    const body = {};
    for (const [k, v] of Object.entries(form)) {
      const changed = original
        ? String(v) !== String(original[k])
        : k === 'group_name' || (v !== '' && String(v) !== String(DEFAULTS[k]));
      if (changed) body[k] = v;
    }
    setSaving(true);
    try {
      if (id) {
        await api('PUT', `/api/out_call_tasks/${id}`, body);
        go(`#/tasks/${id}`);
      } else {
        const created = await api('POST', '/api/out_call_tasks', body);
        go(`#/tasks/${created.data}`);
      }
    } catch (err) {
      const field = fieldOf(err.message);
      if (field) setErrors({ [field]: err.message });
      else setGeneral(err.message);
    } finally {
      setSaving(false);
    }
  };

  const input = (k) => {
    if (FLAGS.has(k)) {
      return html`<label class="switch"><input type="checkbox" id=${`f-${k}`} name=${k} checked=${Number(form[k]) === 1}
        onChange=${(e) => set(k, e.target.checked ? 1 : 0)} /> <span>${t(`task.${k}.on`)}</span></label>`;
    }
    if (k === 'action') {
      return html`<select id="f-action" name="action" value=${form.action} onChange=${(e) => set('action', e.target.value)}>
        <option value="">${t('action.none')}</option><option value="playback">${t('action.playback')}</option>
        <option value="transfer">${t('action.transfer')}</option></select>`;
    }
    if (k === 'group_confirm_file' || (k === 'data' && form.action === 'playback')) {
      return html`<${MediaPicker} id=${`f-${k}`} value=${form[k]} onChange=${(v) => set(k, v)} />`;
    }
    if (k === 'description') {
      return html`<textarea id="f-description" name="description" rows="2" value=${form[k]} onInput=${(e) => set(k, e.target.value)}></textarea>`;
    }
    if (k === 'task_start_time') {
      return html`<input id="f-task_start_time" name=${k} placeholder="YYYY-MM-DD HH:MM:SS" value=${form[k]} onInput=${(e) => set(k, e.target.value)} />`;
    }
    const range = NUMBERS[k];
    return html`<input id=${`f-${k}`} name=${k} value=${form[k]} inputmode=${range ? 'decimal' : undefined}
      onInput=${(e) => set(k, e.target.value)} />`;
  };

  return html`<section class="page editor">
    <div class="page-head">
      <h2>${id ? t('editor.edit', { name: original?.group_name || id }) : t('editor.new')}</h2>
      <a class="btn" href=${id ? `#/tasks/${id}` : '#/tasks'}>${t('common.back')}</a>
    </div>
    <form onSubmit=${save} novalidate>
      <${Notice}>${general}<//>
      ${GROUPS.map(([group, fields]) => html`<fieldset class="card group">
        <legend>${t(`group.${group}`)}</legend>
        <div class="fields">
          ${fields.map((k) => html`<div class=${`field ${errors[k] ? 'has-error' : ''} ${k === 'description' || k === 'data' || k === 'group_confirm_file' ? 'wide' : ''}`} data-field=${k}>
            <label for=${`f-${k}`}>${t(`task.${k}`)}${k === 'group_name' ? html` <span class="req">*</span>` : null}<code class="field-key">${k}</code></label>
            ${input(k)}
            ${t(`hint.${k}`) ? html`<div class="hint">${t(`hint.${k}`)}</div>` : null}
            ${errors[k] ? html`<div class="field-error" role="alert">${errors[k]}</div>` : null}
          </div>`)}
        </div>
      </fieldset>`)}
      <div class="form-actions">
        <button class="btn primary" type="submit" id="save-task" disabled=${saving}>${t('common.save')}</button>
      </div>
    </form>
  </section>`;
}
