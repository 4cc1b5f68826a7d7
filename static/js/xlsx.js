// Client-side preview of an XLSX file: the first rows of its first sheet, read from the zip with
// the browser's own DecompressionStream. Only the start of the sheet (and of the shared strings it
// uses) is inflated, so a million-row workbook previews as fast as a small one. The server parses
// the whole file itself; this only shows what is about to be sent.

const EOCD_SIGNATURE = 0x06054b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
/** How much inflated text of a part is read at most for a preview. */
const TEXT_BUDGET = 4 * 1024 * 1024;

const bytesOf = async (file, start, end) => new DataView(await file.slice(start, end).arrayBuffer());

/** The zip's entries by name: compression method, compressed size and local header offset. */
async function entries(file) {
  const tailStart = Math.max(0, file.size - (65535 + 22));
  const tail = await bytesOf(file, tailStart, file.size);
  let eocd = -1;
  for (let i = tail.byteLength - 22; i >= 0; i--) {
    if (tail.getUint32(i, true) === EOCD_SIGNATURE) { eocd = i; break; }
  }
  if (eocd < 0) throw new Error('not a zip file');
  const size = tail.getUint32(eocd + 12, true);
  const offset = tail.getUint32(eocd + 16, true);
  if (offset === 0xffffffff || size === 0xffffffff) throw new Error('ZIP64 is not previewed');
  const dir = await bytesOf(file, offset, offset + size);
  const names = new Map();
  const decoder = new TextDecoder();
  for (let p = 0; p + 46 <= dir.byteLength && dir.getUint32(p, true) === CENTRAL_SIGNATURE;) {
    const nameLength = dir.getUint16(p + 28, true);
    const extraLength = dir.getUint16(p + 30, true);
    const commentLength = dir.getUint16(p + 32, true);
    const name = decoder.decode(new Uint8Array(dir.buffer, dir.byteOffset + p + 46, nameLength));
    names.set(name, {
      method: dir.getUint16(p + 10, true),
      compressed: dir.getUint32(p + 20, true),
      local: dir.getUint32(p + 42, true),
    });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return names;
}

/**
 * The text of one part, inflated as a stream until `enough(text)` says so or the budget is
 * spent; whatever is left of the part is never read.
 */
async function partText(file, entry, enough = () => false) {
  const header = await bytesOf(file, entry.local, entry.local + 30);
  if (header.getUint32(0, true) !== LOCAL_SIGNATURE) throw new Error('damaged zip entry');
  const start = entry.local + 30 + header.getUint16(26, true) + header.getUint16(28, true);
  let stream = file.slice(start, start + entry.compressed).stream();
  if (entry.method === 8) stream = stream.pipeThrough(new DecompressionStream('deflate-raw'));
  else if (entry.method !== 0) throw new Error(`zip method ${entry.method} is not previewed`);
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      if (enough(text) || text.length > TEXT_BUDGET) break;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return text;
}

const unescapeXml = (s) => s.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos);/gi, (_, e) => {
  const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[e.toLowerCase()];
  if (named) return named;
  return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
});

/** The text of every `<t>` inside an XML fragment (a shared string or an inline string). */
const texts = (xml) => [...xml.matchAll(/<t(?:\s[^>]*)?>([^<]*)<\/t>/g)].map((m) => unescapeXml(m[1])).join('');

/** The part name of the workbook's first sheet (`xl/worksheets/sheet1.xml` when not told). */
async function firstSheet(file, names) {
  try {
    const workbook = await partText(file, names.get('xl/workbook.xml'));
    const rels = await partText(file, names.get('xl/_rels/workbook.xml.rels'));
    const id = /<sheet\b[^>]*\br:id="([^"]+)"/.exec(workbook)[1];
    const rel = [...rels.matchAll(/<Relationship\b[^>]*>/g)].map((m) => m[0]).find((r) => r.includes(`Id="${id}"`));
    const target = /Target="([^"]+)"/.exec(rel)[1];
    return target.startsWith('/') ? target.slice(1) : `xl/${target}`;
  } catch {
    return 'xl/worksheets/sheet1.xml';
  }
}

/** A column's 0-based index from a cell reference such as `AB12`. */
const columnOf = (ref) => [...ref.replace(/[0-9]/g, '')].reduce((n, c) => n * 26 + c.charCodeAt(0) - 64, 0) - 1;

/** A numeric cell as the server reads it: a whole number without a fraction or an exponent. */
function numberText(v) {
  const n = Number(v);
  return Number.isFinite(n) && Number.isInteger(n) ? n.toFixed(0) : v;
}

/** Up to `max` rows of the first sheet, each an array of cell texts. */
export async function readXlsxHead(file, max = 8) {
  const names = await entries(file);
  const sheet = names.get(await firstSheet(file, names));
  if (!sheet) throw new Error('the workbook has no sheet');
  const xml = await partText(file, sheet, (text) => (text.match(/<\/row>/g) || []).length >= max);
  const raw = [...xml.matchAll(/<row\b[^>]*>([\s\S]*?)<\/row>/g)].slice(0, max).map((row) =>
    [...row[1].matchAll(/<c\b([^>]*?)(?:\/>|>([\s\S]*?)<\/c>)/g)].map(([, attrs, body = '']) => ({
      column: columnOf((/\br="([A-Z]+[0-9]*)"/.exec(attrs) || [, 'A'])[1]),
      type: (/\bt="([^"]+)"/.exec(attrs) || [, 'n'])[1],
      value: (/<v>([^<]*)<\/v>/.exec(body) || [, ''])[1],
      inline: body,
    })));
  const wanted = Math.max(-1, ...raw.flat().filter((c) => c.type === 's').map((c) => Number(c.value)));
  let shared = [];
  const strings = names.get('xl/sharedStrings.xml');
  if (wanted >= 0 && strings) {
    const sst = await partText(file, strings, (text) => (text.match(/<\/si>/g) || []).length > wanted);
    shared = [...sst.matchAll(/<si>([\s\S]*?)<\/si>/g)].map((m) => texts(m[1]));
  }
  return raw.map((cells) => {
    const row = [];
    for (const c of cells) {
      let text;
      if (c.type === 's') text = shared[Number(c.value)] ?? '';
      else if (c.type === 'inlineStr') text = texts(c.inline);
      else if (c.type === 'n') text = numberText(c.value);
      else text = unescapeXml(c.value);
      row[c.column] = text;
    }
    return Array.from(row, (v) => v ?? '');
  });
}
