// The import wizard: paste a list or pick a CSV/XLSX file, preview it (in the browser), choose the
// columns, send it as one multipart upload with a progress bar, and show what was imported and
// rejected.

import { html, useEffect, useState } from '../../vendor/htm-3.1.1-preact-standalone.module.js';
import { api, upload } from '../api.js';
import { dialable, parseRows, pastedRows, readHead, toCsv } from '../csv.js';
import { t } from '../i18n.js';
import { readXlsxHead } from '../xlsx.js';
import { Notice } from '../ui.js';

export function ImportWizard({ id }) {
  const [task, setTask] = useState(null);
  const [mode, setMode] = useState('paste');
  const [pasted, setPasted] = useState('');
  const [file, setFile] = useState(null);
  const [preview, setPreview] = useState(null); // {rows, encoding} or {xlsx:true}
  const [hasHeader, setHasHeader] = useState('');
  const [numberColumn, setNumberColumn] = useState('1');
  const [externalColumn, setExternalColumn] = useState('');
  const [progress, setProgress] = useState(null);
  const [result, setResult] = useState(null);
  const [error, setError] = useState('');

  useEffect(() => { api('GET', `/api/out_call_tasks/${id}`).then(setTask).catch((e) => setError(e.message)); }, [id]);

  const pick = async (e) => {
    const f = e.target.files[0];
    setFile(f || null);
    setResult(null);
    setPreview(null);
    setNumberColumn('1');
    setExternalColumn('');
    if (!f) return;
    let rows;
    let encoding;
    if (/\.xlsx$/i.test(f.name)) {
      try {
        rows = await readXlsxHead(f, 8);
        encoding = 'XLSX';
      } catch {
        // A workbook this reader does not follow (ZIP64, say) is still sent: the server reads it.
        setPreview({ xlsx: true });
        setHasHeader('');
        return;
      }
    } else {
      const head = await readHead(f);
      rows = parseRows(head.text, 8);
      encoding = head.encoding;
    }
    setPreview({ rows, encoding });
    setHasHeader(rows.length && !dialable(rows[0][0]) ? '1' : '0');
  };

  const rows = mode === 'paste' ? pastedRows(pasted) : preview?.rows || [];
  const width = Math.max(0, ...rows.map((r) => r.length));
  const header = mode === 'file' && hasHeader === '1' && rows.length ? rows[0] : null;
  const columns = Array.from({ length: Math.max(width, mode === 'file' && preview?.xlsx ? 10 : 0) }, (_, i) => ({
    value: String(i + 1),
    label: header && header[i] ? `${i + 1}: ${header[i]}` : t('import.column_n', { n: i + 1 }),
  }));

  const send = async () => {
    setError('');
    setResult(null);
    const form = new FormData();
    if (mode === 'paste') {
      form.append('file', new Blob([toCsv(pastedRows(pasted))], { type: 'text/csv' }), 'pasted.csv');
      form.append('has_header', '0');
      form.append('number_column', '1');
      form.append('external_id_column', '2');
    } else {
      form.append('file', file, file.name);
      if (hasHeader !== '') form.append('has_header', hasHeader);
      // A column goes by its header's name when it has a unique one, else by its number.
      const byName = (n) => {
        const name = header && header[Number(n) - 1];
        return name && header.filter((h) => h === name).length === 1 ? name : n;
      };
      form.append('number_column', byName(numberColumn));
      if (externalColumn) form.append('external_id_column', byName(externalColumn));
    }
    setProgress(0);
    try {
      const body = await upload(`/api/out_call_tasks/${id}/import`, form, setProgress);
      setProgress(1);
      setResult(typeof body.data === 'string' ? JSON.parse(body.data) : body.data);
    } catch (e) {
      setError(e.message);
      setProgress(null);
    }
  };

  const ready = mode === 'paste' ? rows.length > 0 : !!file;
  return html`<section class="page import">
    <div class="page-head">
      <h2><a href="#/tasks" class="crumb">${t('nav.tasks')}</a> / <a href=${`#/tasks/${id}`} class="crumb">${task ? task.group_name : `#${id}`}</a> / ${t('import.title')}</h2>
      <a class="btn" href=${`#/tasks/${id}`}>${t('common.back')}</a>
    </div>
    <div class="card">
      <div class="tabs" role="tablist">
        <button role="tab" id="mode-paste" class=${mode === 'paste' ? 'tab active' : 'tab'} onClick=${() => { setMode('paste'); setResult(null); }}>${t('import.paste')}</button>
        <button role="tab" id="mode-file" class=${mode === 'file' ? 'tab active' : 'tab'} onClick=${() => { setMode('file'); setResult(null); }}>${t('import.file')}</button>
      </div>
      ${mode === 'paste'
        ? html`<label>${t('import.paste_hint')}<textarea id="paste-numbers" rows="8" placeholder="13800138000,A-001"
            value=${pasted} onInput=${(e) => { setPasted(e.target.value); setResult(null); }}></textarea></label>`
        : html`<div class="file-line">
            <label class="btn file-btn">${t('import.choose')}<input type="file" id="import-file" accept=".csv,.txt,.xlsx,text/csv" onChange=${pick} /></label>
            <span class="muted">${file ? `${file.name} (${(file.size / 1024).toFixed(1)} KiB)` : t('import.file_hint')}</span>
          </div>`}
      ${mode === 'file' && preview?.xlsx ? html`<${Notice} kind="info">${t('import.xlsx_no_preview')}<//>` : null}
      ${rows.length ? html`<div class="preview">
        <h4>${t('import.preview')} ${preview?.encoding ? html`<span class="muted" id="preview-encoding">(${preview.encoding})</span>` : null}</h4>
        <div class="table-wrap"><table class="grid" id="preview-table">
          ${rows.slice(0, 8).map((r, i) => html`<tr class=${header && i === 0 ? 'header-row' : ''}>
            ${Array.from({ length: width }, (_, c) => html`<td class=${String(c + 1) === numberColumn || (mode === 'paste' && c === 0) ? 'col-number' : ''}>${r[c] ?? ''}</td>`)}
          </tr>`)}
        </table></div>
      </div>` : null}
      ${mode === 'file' && file ? html`<div class="columns">
        <label>${t('import.has_header')}<select id="has-header" value=${hasHeader} onChange=${(e) => setHasHeader(e.target.value)}>
          <option value="">${t('import.guess')}</option><option value="1">${t('common.yes')}</option><option value="0">${t('common.no')}</option></select></label>
        <label>${t('import.number_column')}<select id="number-column" value=${numberColumn} onChange=${(e) => setNumberColumn(e.target.value)}>
          ${columns.map((c) => html`<option value=${c.value}>${c.label}</option>`)}</select></label>
        <label>${t('import.external_column')}<select id="external-column" value=${externalColumn} onChange=${(e) => setExternalColumn(e.target.value)}>
          <option value="">${t('import.none')}</option>
          ${columns.map((c) => html`<option value=${c.value}>${c.label}</option>`)}</select></label>
      </div>` : null}
      <div class="form-actions">
        <button class="btn primary" id="import-send" disabled=${!ready || (progress != null && progress < 1 && !result)} onClick=${send}>${t('import.send')}</button>
        ${progress != null ? html`<progress id="import-progress" max="1" value=${progress}></progress>
          <span class="muted">${Math.round(progress * 100)}%</span>` : null}
      </div>
      <${Notice}>${error}<//>
      ${result ? html`<div class="import-result" id="import-result">
        <div class="stat-cards small">
          <div class="stat stat-done"><div class="stat-value" id="imported-count">${result.imported}</div><div class="stat-label">${t('import.imported')}</div></div>
          <div class="stat stat-failed"><div class="stat-value" id="rejected-count">${result.rejected}</div><div class="stat-label">${t('import.rejected')}</div></div>
          ${result.duplicates != null ? html`<div class="stat stat-init"><div class="stat-value" id="duplicates-count">${result.duplicates}</div><div class="stat-label">${t('import.duplicates')}</div></div>` : null}
          ${result.dnc != null ? html`<div class="stat stat-stop"><div class="stat-value" id="dnc-count">${result.dnc}</div><div class="stat-label">${t('import.dnc')}</div></div>` : null}
        </div>
        ${result.first_rejected && result.first_rejected.length ? html`<h4>${t('import.first_rejected')}</h4>
          <table class="grid" id="rejected-table"><thead><tr><th class="num">${t('import.row')}</th><th>${t('import.value')}</th><th>${t('import.reason')}</th></tr></thead>
          <tbody>${result.first_rejected.map((r) => html`<tr><td class="num">${r.row}</td><td class="mono">${r.value}</td><td>${r.reason}</td></tr>`)}</tbody></table>` : null}
        <a class="btn" id="import-to-task" href=${`#/tasks/${id}`}>${t('import.to_task')}</a>
      </div>` : null}
    </div>
  </section>`;
}
