// The task editor, grouped as the vendor groups the fields, then outcall's own (retries and
// calling hours, webhook). The API's 4xx message is shown next to the field it names.

import { html, useEffect, useState } from '../../vendor/htm-3.1.1-preact-standalone.module.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { Notice, go } from '../ui.js';
import { MediaPicker } from './media.js';

const RETRY_DEFAULT = 'USER_BUSY,NO_ANSWER,NO_USER_RESPONSE,NORMAL_TEMPORARY_FAILURE,NORMAL_CIRCUIT_CONGESTION,RECOVERY_ON_TIMER_EXPIRE';
/** The causes offered as checkboxes; any other known cause name may be typed. */
const COMMON_CAUSES = [...RETRY_DEFAULT.split(','), 'CALL_REJECTED'];
const WEEKDAYS = [1, 2, 3, 4, 5, 6, 7];
const ZONES = [
  'Asia/Shanghai', 'Asia/Hong_Kong', 'Asia/Taipei', 'Asia/Singapore', 'Asia/Tokyo', 'Asia/Seoul', 'Asia/Kolkata',
  'Asia/Dubai', 'Europe/London', 'Europe/Berlin', 'Europe/Paris', 'Europe/Moscow', 'America/New_York',
  'America/Chicago', 'America/Denver', 'America/Los_Angeles', 'America/Sao_Paulo', 'Australia/Sydney', 'UTC',
];

const DEFAULTS = {
  group_name: '', description: '', cid_number: '', cid_name: '', context: 'context-1', dest_context: '',
  calling_time: 30, max_caps: 1, max_concurrency: 1, auto_dial: 0, task_start_time: '',
  disable_ring_back: 1, auto_record: 0,
  group_confirm_key: '', group_confirm_read_timeout: '', group_confirm_file: '',
  action: '', data: '',
  max_attempts: 1, retry_interval: 300, retry_causes: RETRY_DEFAULT,
  call_windows: '', call_weekdays: '', time_zone: '', task_end_time: '', webhook_url: '',
};

const GROUPS = [
  ['basic', ['group_name', 'description', 'cid_number', 'cid_name', 'context', 'dest_context']],
  ['call', ['calling_time', 'max_caps', 'max_concurrency', 'auto_dial', 'task_start_time', 'disable_ring_back', 'auto_record']],
  ['confirm', ['group_confirm_key', 'group_confirm_read_timeout', 'group_confirm_file']],
  ['action', ['action', 'data']],
  ['retry', ['max_attempts', 'retry_interval', 'retry_causes', 'call_windows', 'call_weekdays', 'time_zone', 'task_end_time']],
  ['webhook', ['webhook_url']],
];
const WIDE = new Set(['description', 'data', 'group_confirm_file', 'retry_causes', 'webhook_url']);
const FLAGS = new Set(['auto_dial', 'disable_ring_back', 'auto_record']);
const NUMBERS = {
  calling_time: [5, 300, 1], max_caps: [0.001, 10000, 'any'], max_concurrency: [1, 100000, 1], group_confirm_read_timeout: [1, 600, 1],
  max_attempts: [1, 100, 1], retry_interval: [1, 2592000, 1],
};

/** The days of a `call_weekdays` value (`1-5`, `1,3,5`, `1-3,6`). */
export function weekdaysOf(text) {
  const days = new Set();
  for (const part of String(text || '').split(',').map((p) => p.trim()).filter(Boolean)) {
    const [a, b = a] = part.split('-').map((d) => Number(d.trim()));
    for (let d = a; d <= b && d <= 7; d++) if (d >= 1) days.add(d);
  }
  return days;
}

/** Days as `call_weekdays` text, runs of three or more as ranges (`1-5`, `1,3,6-7`). */
export function weekdaysText(days) {
  const sorted = [...days].sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    if (j - i >= 2) parts.push(`${sorted[i]}-${sorted[j]}`);
    else for (let k = i; k <= j; k++) parts.push(String(sorted[k]));
    i = j + 1;
  }
  return parts.join(',');
}

const causeNames = (text) => String(text || '').split(',').map((c) => c.trim()).filter(Boolean);

/** Checkboxes of the common causes, and a text field for any other cause names. */
function RetryCauses({ value, onChange }) {
  const names = causeNames(value);
  const [other, setOther] = useState(names.filter((c) => !COMMON_CAUSES.includes(c)).join(','));
  const compose = (checked, otherText) => [...COMMON_CAUSES.filter((c) => checked.includes(c)), ...causeNames(otherText)].join(',');
  const toggle = (cause, on) => {
    const checked = names.filter((c) => COMMON_CAUSES.includes(c) && c !== cause);
    onChange(compose(on ? [...checked, cause] : checked, other));
  };
  return html`<div class="cause-picks" id="f-retry_causes">
    ${COMMON_CAUSES.map((c) => html`<label class="switch cause-pick"><input type="checkbox" name="retry_causes" value=${c}
      checked=${names.includes(c)} onChange=${(e) => toggle(c, e.target.checked)} /> <span>${c}<small class="sub"> ${t(`cause.${c}`)}</small></span></label>`)}
    <input id="f-retry_causes-other" placeholder=${t('editor.other_causes')} value=${other}
      onInput=${(e) => { setOther(e.target.value); onChange(compose(names, e.target.value)); }} />
  </div>`;
}

function Weekdays({ value, onChange }) {
  const days = weekdaysOf(value);
  const toggle = (d, on) => {
    const next = new Set(days);
    if (on) next.add(d); else next.delete(d);
    onChange(weekdaysText(next));
  };
  return html`<div class="weekday-picks" id="f-call_weekdays">
    ${WEEKDAYS.map((d) => html`<label class="switch"><input type="checkbox" name="call_weekdays" value=${d}
      checked=${days.has(d)} onChange=${(e) => toggle(d, e.target.checked)} /> <span>${t(`weekday.${d}`)}</span></label>`)}
  </div>`;
}

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
        : k === 'group_name' || ((v !== '' || k === 'retry_causes') && String(v) !== String(DEFAULTS[k]));
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
    if (k === 'task_start_time' || k === 'task_end_time') {
      return html`<input id=${`f-${k}`} name=${k} placeholder="YYYY-MM-DD HH:MM:SS" value=${form[k]} onInput=${(e) => set(k, e.target.value)} />`;
    }
    if (k === 'retry_causes') return html`<${RetryCauses} value=${form[k]} onChange=${(v) => set(k, v)} />`;
    if (k === 'call_weekdays') return html`<${Weekdays} value=${form[k]} onChange=${(v) => set(k, v)} />`;
    if (k === 'call_windows') {
      return html`<input id="f-call_windows" name=${k} placeholder="09:00-12:00,14:00-18:00" value=${form[k]} onInput=${(e) => set(k, e.target.value)} />`;
    }
    if (k === 'time_zone') {
      return html`<input id="f-time_zone" name=${k} list="time-zones" placeholder=${t('editor.server_zone')} value=${form[k]}
        onInput=${(e) => set(k, e.target.value)} />
        <datalist id="time-zones">${ZONES.map((z) => html`<option value=${z}></option>`)}</datalist>`;
    }
    if (k === 'webhook_url') {
      return html`<input id="f-webhook_url" name=${k} type="url" inputmode="url" placeholder="https://crm.example.com/outcall" value=${form[k]}
        onInput=${(e) => set(k, e.target.value)} />`;
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
          ${fields.map((k) => html`<div class=${`field ${errors[k] ? 'has-error' : ''} ${WIDE.has(k) ? 'wide' : ''}`} data-field=${k}>
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
