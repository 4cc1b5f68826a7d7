// Client-side preview of a CSV file: its encoding (UTF-8, else GB18030, which covers GBK) and its
// first rows. The server parses the whole file itself; this only shows what is about to be sent.

const PREVIEW_BYTES = 64 * 1024;

/** The text of the file's first bytes, and the encoding that decodes them. */
export async function readHead(file) {
  const bytes = new Uint8Array(await file.slice(0, PREVIEW_BYTES).arrayBuffer());
  try {
    // A multi-byte character cut at the slice's end is not an error of the file: decode in
    // streaming mode so that an incomplete tail is held back rather than refused.
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true }), encoding: 'UTF-8' };
  } catch {
    return { text: new TextDecoder('gb18030').decode(bytes, { stream: true }), encoding: 'GBK/GB18030' };
  }
}

/** Up to `max` complete rows of CSV text (quotes, doubled quotes, CRLF); the BOM is dropped. */
export function parseRows(text, max = 10) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  const s = text.replace(/^\uFEFF/, '');
  for (let i = 0; i < s.length && rows.length < max; i++) {
    const c = s[i];
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && s[i + 1] === '\n') i++;
      row.push(cell); cell = '';
      if (row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
    } else cell += c;
  }
  return rows;
}

/** Whether a cell is a number outcall can dial (as the server checks `dest_number`). */
export const dialable = (cell) => /^\+?[0-9*#]{1,32}$/.test((cell || '').trim());

/** Lines pasted by hand: `number`, or `number,external id` (comma, tab or spaces). */
export function pastedRows(text) {
  return text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean)
    .map((l) => { const m = /^(\S+?)(?:[\s,;\t]+(.*))?$/.exec(l); return [m[1], (m[2] || '').trim()]; });
}

/** Rows as CSV text (for sending a pasted list as a file). */
export function toCsv(rows) {
  const q = (v) => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  return rows.map((r) => r.map(q).join(',')).join('\n') + '\n';
}
