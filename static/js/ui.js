// Small shared pieces of the screens.

import { html, useEffect, useState } from '../vendor/htm-3.1.1-preact-standalone.module.js';
import { t } from './i18n.js';

export { html };

export const STATUSES = ['init', 'running', 'stop', 'done'];
export const NUMBER_STATUSES = ['init', 'calling', 'done', 'stop'];
export const CAUSES = [
  'NORMAL_CLEARING', 'USER_BUSY', 'NO_ANSWER', 'NO_USER_RESPONSE', 'CALL_REJECTED',
  'UNALLOCATED_NUMBER', 'ORIGINATOR_CANCEL', 'RECOVERY_ON_TIMER_EXPIRE',
  'NORMAL_TEMPORARY_FAILURE', 'NORMAL_CIRCUIT_CONGESTION', 'SYSTEM_SHUTDOWN', 'ALLOTTED_TIMEOUT', 'DNC',
];

export const go = (hash) => { location.hash = hash; };

export function StatusBadge({ status }) {
  return html`<span class="badge st-${status}">${t(`status.${status}`)}</span>`;
}

export function NumberStatus({ status }) {
  return html`<span class="badge nst-${status}">${t(`nstatus.${status}`)}</span>`;
}

/** A progress bar with its done/total text; no layout jump as numbers grow. */
export function Progress({ done, total }) {
  const pct = total > 0 ? Math.floor((done * 100) / total) : 0;
  return html`<span class="progress">
    <progress max=${Math.max(total, 1)} value=${done}></progress>
    <span class="progress-text">${fmtInt(done)}/${fmtInt(total)} <small>${pct}%</small></span>
  </span>`;
}

export function Pager({ page, pageCount, rowCount, onPage }) {
  return html`<div class="pager">
    <span class="muted">${t('pager.rows', { n: fmtInt(rowCount) })}</span>
    <button class="btn small" disabled=${page <= 1} onClick=${() => onPage(page - 1)}>‹ ${t('pager.prev')}</button>
    <span class="pager-pos">${t('pager.page', { page, pages: Math.max(pageCount, 1) })}</span>
    <button class="btn small" disabled=${page >= pageCount} onClick=${() => onPage(page + 1)}>${t('pager.next')} ›</button>
  </div>`;
}

/** A modal dialog over the page; `onClose` on Escape or the backdrop. */
export function Modal({ title, children, onClose, footer, wide = false }) {
  useEffect(() => {
    const key = (e) => { if (e.key === 'Escape') onClose(); };
    addEventListener('keydown', key);
    return () => removeEventListener('keydown', key);
  }, [onClose]);
  return html`<div class="modal-backdrop" onClick=${(e) => { if (e.target === e.currentTarget) onClose(); }}>
    <div class=${wide ? 'modal wide' : 'modal'} role="dialog" aria-modal="true" aria-label=${title}>
      <h3>${title}</h3>
      <div class="modal-body">${children}</div>
      <div class="modal-footer">${footer}</div>
    </div>
  </div>`;
}

/** Text with a copy button (uuid). */
export function Copyable({ text }) {
  const [copied, setCopied] = useState(false);
  if (!text) return html`<span class="muted">—</span>`;
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const range = document.createRange();
      range.selectNodeContents(document.getElementById(`c-${text}`));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 1200);
  };
  return html`<span class="copyable"><code id=${`c-${text}`} title=${text}>${text}</code>
    <button class="btn tiny copy" title=${t('common.copy')} onClick=${copy}>${copied ? t('common.copied') : t('common.copy')}</button></span>`;
}

/** A one-line message: error (red) or info. */
export function Notice({ kind = 'error', children }) {
  if (!children) return null;
  return html`<div class=${`notice ${kind}`} role=${kind === 'error' ? 'alert' : 'status'}>${children}</div>`;
}

const integers = new Intl.NumberFormat('en-US');
/** A count with thousands separators (1,000,000), the same in both languages. */
export const fmtInt = (n) => (n == null ? '—' : integers.format(n));

export const fmtRate = (x) => (x == null ? '—' : (Math.round(x * 100) / 100).toFixed(2));
