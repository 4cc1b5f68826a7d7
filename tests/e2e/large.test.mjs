// A million-row CSV through the import wizard: previewed from its first bytes only, sent as one
// multipart upload with a progress bar, every row imported, and the task's header shows them.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { apiCall, apiToken, loggedInPage, screenshot, startOutcall } from './lib.mjs';

const ROWS = 1_000_000;
const cleanup = [];
after(async () => { for (const fn of cleanup.reverse()) await fn(); });

test('import a million-row CSV in one upload', async () => {
  const server = await startOutcall(['--backend', 'sim']);
  cleanup.push(() => server.stop());
  const token = await apiToken(server.base);
  const created = await apiCall(server.base, token, 'POST', '/api/out_call_tasks', { group_name: '百万号码' });
  const id = created.data;

  const lines = new Array(ROWS);
  for (let i = 0; i < ROWS; i++) lines[i] = `${15000000000 + i},C${i}`;
  const csv = Buffer.from(`${lines.join('\n')}\n`);

  const w = await loggedInPage(server.base, cleanup);
  const { page } = w;
  await page.goto(`${server.base}/#/tasks/${id}/import`);
  await page.click('#mode-file');
  await page.setInputFiles('#import-file', { name: 'million.csv', mimeType: 'text/csv', buffer: csv });
  await page.locator('#preview-table').waitFor();
  assert.equal(await page.inputValue('#has-header'), '0', 'the first row is a number: no header');
  assert.equal(await page.locator('#preview-table tr').count(), 8, 'only the first rows are previewed');
  await page.selectOption('#external-column', '2');
  const started = Date.now();
  await page.click('#import-send');
  await page.locator('#import-progress').waitFor();
  await page.locator('#import-result').waitFor({ timeout: 180000 });
  const seconds = (Date.now() - started) / 1000;
  assert.equal(Number(await page.locator('#imported-count').innerText()), ROWS);
  assert.equal(Number(await page.locator('#rejected-count').innerText()), 0);
  assert.equal(Number(await page.getAttribute('#import-progress', 'value')), 1);
  console.log(`# ${ROWS} rows (${(csv.length / 1048576).toFixed(1)} MiB) imported through the page in ${seconds.toFixed(1)} s`);
  await screenshot(page, '15-import-million');
  await page.click('#import-to-task');
  await page.locator('[data-stat=total] .stat-value', { hasText: '1,000,000' }).waitFor();
  await page.locator('.pager', { hasText: '1,000,000' }).waitFor();
  w.check('a million rows');
});
