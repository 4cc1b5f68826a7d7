// The media picker: the prompts of /api/media_files, a WAV upload, and playback.

import { html, useEffect, useState } from '../../vendor/htm-3.1.1-preact-standalone.module.js';
import { api, upload, withToken } from '../api.js';
import { t } from '../i18n.js';

/** The media_id a task's reference names, if any: `{"media_id":N,…}`. */
export function mediaIdOf(value) {
  try {
    const parsed = JSON.parse(value);
    return parsed && parsed.media_id != null ? String(parsed.media_id) : '';
  } catch {
    return '';
  }
}

let cache = null;
async function mediaList(force) {
  if (!cache || force) {
    const body = await api('GET', '/api/media_files?perPage=1000');
    cache = body.data;
  }
  return cache;
}

/** `value` is the task's reference (a JSON string of the media object); `onChange(reference)`. */
export function MediaPicker({ id, value, onChange }) {
  const [files, setFiles] = useState([]);
  const [progress, setProgress] = useState(null);
  const [error, setError] = useState('');
  const [playing, setPlaying] = useState(false);
  const selected = mediaIdOf(value);

  useEffect(() => { mediaList().then(setFiles).catch(() => {}); }, []);

  const pick = (mediaId) => {
    const file = files.find((f) => String(f.media_id) === mediaId);
    onChange(file ? JSON.stringify(file) : '');
    setPlaying(false);
  };

  const uploadFile = async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    const form = new FormData();
    form.append('file', file);
    form.append('name', file.name.replace(/\.wav$/i, ''));
    setError('');
    setProgress(0);
    try {
      const body = await upload('/api/media_files', form, setProgress);
      setFiles(await mediaList(true));
      onChange(JSON.stringify(body.data));
    } catch (err) {
      setError(err.message);
    } finally {
      setProgress(null);
      e.target.value = '';
    }
  };

  return html`<div class="media-picker">
    <div class="row">
      <select id=${id} value=${selected} onChange=${(e) => pick(e.target.value)}>
        <option value="">${t('media.none')}</option>
        ${files.map((f) => html`<option value=${String(f.media_id)}>${f.media_name} (#${f.media_id})</option>`)}
        ${selected && !files.some((f) => String(f.media_id) === selected) ? html`<option value=${selected}>#${selected}</option>` : null}
      </select>
      <label class="btn small file-btn">${t('media.upload')}
        <input type="file" accept=".wav,audio/wav,audio/x-wav" class=${`${id}-upload`} onChange=${uploadFile} /></label>
      <button type="button" class="btn small" disabled=${!selected} onClick=${() => setPlaying(!playing)}>
        ${playing ? t('media.hide') : `▶ ${t('media.play')}`}</button>
    </div>
    ${progress != null ? html`<progress class="upload-progress" max="1" value=${progress}></progress>` : null}
    ${playing && selected ? html`<audio class="media-audio" controls autoplay src=${withToken(`/api/media_files/${selected}/audio`)}></audio>` : null}
    ${error ? html`<div class="field-error">${error}</div>` : null}
    ${value && !selected ? html`<div class="hint">${value}</div>` : null}
  </div>`;
}
