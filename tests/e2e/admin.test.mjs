// The admin page in real Chromium against the real binary on the sim back end: one campaign from
// log-in to log-out, flow by flow. Each flow fails on any console error, page error, failed
// request or error answer it did not expect, and saves a screenshot in target/e2e-screenshots/.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import {
  FIXTURES, PASSWORD, apiCall, apiToken, csvRows, launch, poll, screenshot, sineWav, startOutcall, watchedPage, xlsxRows,
} from './lib.mjs';

let server;
let browser;
let w; // the watched page
let page;
let taskId;

before(async () => {
  server = await startOutcall(['--backend', 'sim', '--sim-time-scale', '0.01']);
  browser = await launch();
  w = await watchedPage(browser);
  page = w.page;
});

beforeEach(() => w?.reset());

after(async () => {
  await browser?.close();
  await server?.stop();
});

const text = (selector) => page.locator(selector).first().innerText();
const statValue = async (name) => Number(await text(`[data-stat=${name}] .stat-value`));

test('log in (a wrong password first), and a bare page load has no 404', async () => {
  w.expect(401, /\/api\/sessions$/);
  await page.goto(server.base);
  await page.waitForURL(/#\/login$/);
  await page.fill('input[name=login]', 'admin');
  await page.fill('input[name=password]', 'not-the-password');
  await page.click('button[type=submit]');
  await page.locator('.notice.error').waitFor();
  assert.match(await text('.notice.error'), /用户名或密码错误/);
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL(/#\/tasks$/);
  await page.locator('h2', { hasText: '外呼任务' }).waitFor();
  await page.locator('.live-dot.on').waitFor();
  assert.ok(await page.evaluate(() => sessionStorage.getItem('outcall.token')), 'the token is in sessionStorage');
  await screenshot(page, '01-login-task-list');
  w.check('log in');
});

test('create a task: the API refusal shows next to the field it names, then it saves', async () => {
  w.expect(400, /\/api\/out_call_tasks$/);
  await page.click('#new-task');
  await page.waitForURL(/#\/tasks\/new$/);
  for (const group of ['基本信息', '呼叫设置', '按键确认', '接通后动作']) {
    await page.locator('legend', { hasText: group }).waitFor();
  }
  await page.fill('#f-group_name', '双十一回访');
  await page.fill('#f-description', '端到端测试的活动');
  await page.fill('#f-calling_time', '2');
  await page.click('#save-task');
  const error = page.locator('[data-field=calling_time] .field-error');
  await error.waitFor();
  assert.match(await error.innerText(), /calling_time must be from 5 to 300/);
  assert.equal(await page.locator('.field-error').count(), 1, 'only the field named has an error');
  await screenshot(page, '02-editor-validation-error');
  await page.fill('#f-calling_time', '30');
  await page.fill('#f-max_caps', '10');
  await page.fill('#f-max_concurrency', '10');
  await page.click('#save-task');
  await page.waitForURL(/#\/tasks\/\d+$/);
  taskId = Number(/#\/tasks\/(\d+)$/.exec(page.url())[1]);
  await page.locator('#task-name', { hasText: '双十一回访' }).waitFor();
  w.check('create a task');
});

test('upload a prompt in the media picker, play it, and use it as the playback', async () => {
  await page.goto(`${server.base}/#/tasks/${taskId}/edit`);
  await page.selectOption('#f-action', 'playback');
  await page.locator('.f-data-upload').setInputFiles({ name: '欢迎语.wav', mimeType: 'audio/wav', buffer: sineWav(1500) });
  await poll('the uploaded prompt to be picked', async () => (await page.inputValue('#f-data')) !== '');
  assert.match(await page.locator('#f-data option:checked').innerText(), /欢迎语/);
  await page.locator('[data-field=data] button', { hasText: '试听' }).click();
  const duration = await poll('the prompt to play', () => page.evaluate(() => {
    const audio = document.querySelector('.media-audio');
    return audio && audio.readyState >= 1 && !audio.error && audio.duration;
  }));
  assert.ok(Math.abs(duration - 1.5) < 0.1, `the prompt lasts 1.5 s, the player says ${duration}`);
  await screenshot(page, '03-media-upload');
  await page.click('#save-task');
  await page.waitForURL(new RegExp(`#/tasks/${taskId}$`));
  w.check('upload a prompt');
});

async function importResult() {
  await page.locator('#import-result').waitFor();
  return {
    imported: Number(await text('#imported-count')),
    rejected: Number(await text('#rejected-count')),
    rows: await page.locator('#rejected-table tbody tr').allInnerTexts(),
  };
}

test('import by paste: good lines imported, a bad one rejected with its row', async () => {
  await page.goto(`${server.base}/#/tasks/${taskId}/import`);
  const lines = Array.from({ length: 15 }, (_, i) => `1380000${String(i).padStart(4, '0')},P-${i}`);
  lines.splice(3, 0, 'hello,bad');
  await page.fill('#paste-numbers', lines.join('\n'));
  assert.equal(await page.locator('#preview-table tr').count(), 8, 'a preview of the first rows');
  await page.click('#import-send');
  const result = await importResult();
  assert.equal(result.imported, 15);
  assert.equal(result.rejected, 1);
  assert.equal(result.rows.length, 1);
  assert.match(result.rows[0], /^4\s+hello/);
  assert.equal(Number(await page.getAttribute('#import-progress', 'value')), 1, 'the progress bar is full');
  await screenshot(page, '04-import-paste');
  w.check('import by paste');
});

test('import a GBK CSV with a header and bad rows: previewed, columns picked by name', async () => {
  await page.goto(`${server.base}/#/tasks/${taskId}/import`);
  await page.click('#mode-file');
  await page.setInputFiles('#import-file', join(FIXTURES, 'numbers-gbk.csv'));
  await page.locator('#preview-table').waitFor();
  assert.match(await text('#preview-encoding'), /GBK/);
  assert.match(await text('#preview-table'), /电话号码\s+客户名称/);
  assert.match(await text('#preview-table'), /客户0/);
  assert.equal(await page.inputValue('#has-header'), '1', 'the header is recognised');
  assert.match(await page.locator('#external-column option[value="2"]').innerText(), /客户名称/);
  await page.selectOption('#external-column', '2');
  await page.click('#import-send');
  const result = await importResult();
  assert.deepEqual([result.imported, result.rejected], [12, 2]);
  assert.match(result.rows[0], /^14\s+无效号码/, "the file's row numbers, its header being row 1");
  assert.match(result.rows[1], /^15\s+12ab34/);
  await screenshot(page, '05-import-gbk-csv');
  w.check('import a GBK CSV');
});

test('import an XLSX with numeric phone cells', async () => {
  await page.goto(`${server.base}/#/tasks/${taskId}/import`);
  await page.click('#mode-file');
  await page.setInputFiles('#import-file', join(FIXTURES, 'numbers.xlsx'));
  // The preview is read in the browser from the workbook itself: numeric cells as integers.
  await page.locator('#preview-table').waitFor();
  assert.equal(await page.locator('#preview-encoding').innerText(), '(XLSX)');
  const preview = await page.locator('#preview-table tr').allInnerTexts();
  assert.match(preview[0], /号码\s+编号/);
  assert.match(preview[1], /^13700000000\s+X-0$/);
  assert.equal(await page.locator('#has-header').inputValue(), '1', 'a header guessed from the first row');
  assert.match(await page.locator('#external-column option[value="2"]').innerText(), /编号/);
  await page.selectOption('#external-column', '2');
  await page.click('#import-send');
  const result = await importResult();
  assert.deepEqual([result.imported, result.rejected], [12, 1]);
  assert.match(result.rows[0], /not-a-number/);
  await screenshot(page, '06-import-xlsx');
  await page.click('#import-to-task');
  await page.waitForURL(new RegExp(`#/tasks/${taskId}$`));
  await page.fill('#filter-prefix', '137');
  await poll('the XLSX numbers in the table', async () => (await page.locator('tr[data-number^="137"]').count()) === 12);
  assert.equal(await page.locator('tr[data-number="13700000011"]').count(), 1, 'numeric cells read as integers');
  assert.match(await page.locator('tr[data-number="13700000011"]').innerText(), /X-11/);
  await page.fill('#filter-prefix', '');
  w.check('import an XLSX');
});

test('start the task and watch it reach done without navigating; the chart is drawn', async () => {
  await page.goto(`${server.base}/#/tasks/${taskId}`);
  await page.locator('#live-header').waitFor();
  assert.equal(await statValue('total'), 39);
  assert.equal(await statValue('init'), 39);
  await page.evaluate(() => { window.stayedOnPage = true; });
  await page.click('#detail-start');
  await page.locator('.badge.st-running').first().waitFor();
  await poll('the header to show the campaign done', async () => await statValue('done') === 39, 60000);
  await page.locator('h2 .badge.st-done').waitFor({ timeout: 10000 });
  assert.equal(await statValue('init'), 0);
  assert.equal(await statValue('calling'), 0);
  assert.ok(await page.evaluate(() => window.stayedOnPage), 'the page was not reloaded');
  assert.ok(page.url().endsWith(`#/tasks/${taskId}`));
  // The sim's outcomes by last digit: every cause shows in the breakdown.
  const causes = await text('#causes');
  for (const cause of ['NORMAL_CLEARING', 'USER_BUSY', 'NO_ANSWER', 'UNALLOCATED_NUMBER']) assert.match(causes, new RegExp(cause));
  await poll('the numbers table to follow', async () => (await page.locator('.numbers-table .nst-done').count()) === 39);
  // The chart: the "started" series' colour is drawn on the canvas, not just axes.
  const blue = await page.evaluate(() => {
    const canvas = document.querySelector('#rate-chart canvas');
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i + 2] > 180 && data[i] < 90 && data[i + 1] < 150 && data[i + 3] > 200) n++;
    return n;
  });
  assert.ok(blue > 20, `the calls-started line is drawn (${blue} blue pixels)`);
  // A call's uuid is copied by its button.
  await w.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.base });
  const firstUuid = page.locator('.numbers-table .uuid').first();
  const uuid = await firstUuid.locator('code').getAttribute('title');
  assert.match(uuid, /^[0-9a-f-]{36}$/);
  await firstUuid.locator('button.copy').click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), uuid);
  await screenshot(page, '07-campaign-done');
  await screenshot(page, '07-campaign-done-viewport', { fullPage: false }); // docs/admin-page.png
  // The numbers table's filters: by cause, by status, by prefix together.
  const busy = Number(await page.locator('#causes tr', { hasText: 'USER_BUSY' }).locator('td.num').first().innerText());
  assert.equal(busy, 4, 'the sim: numbers ending in 4 are busy (4 of the 39)');
  await page.selectOption('#filter-cause', 'USER_BUSY');
  await poll('the cause filter', async () => {
    const cells = await page.locator('.numbers-table tbody td.cause').allInnerTexts();
    return cells.length === busy && cells.every((c) => c === 'USER_BUSY');
  });
  await page.selectOption('#filter-status', 'init');
  await page.locator('.numbers-table td.empty').waitFor();
  await page.selectOption('#filter-status', 'done');
  await page.fill('#filter-prefix', '139');
  await poll('the cause, status and prefix filters together', async () => {
    const rows = await page.locator('.numbers-table tbody tr[data-number]').evaluateAll((trs) => trs.map((tr) => tr.dataset.number));
    return rows.length === 1 && rows[0] === '13900000004';
  });
  await page.selectOption('#filter-cause', '');
  await page.selectOption('#filter-status', '');
  await page.fill('#filter-prefix', '');
  await screenshot(page, '07-campaign-done-viewport', { fullPage: false }); // docs/admin-page.png
  w.check('campaign');
});

test('export CSV and XLSX: one row a number under the vendor header', async () => {
  const header = ['任务名称', '接通后动作', '被叫号码', '呼叫状态', '呼叫开始时间', '呼叫应答时间', '呼叫结束时间', '总时长', '计费时长', '挂机原因'];
  const [csvDownload] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  const csvBytes = readFileSync(await csvDownload.path());
  assert.deepEqual([...csvBytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'the CSV starts with a UTF-8 BOM');
  const csv = csvRows(csvBytes.toString('utf8').slice(1)).filter((r) => r.length > 1);
  assert.deepEqual(csv[0], header);
  assert.equal(csv.length, 40, 'a header and 39 numbers');
  assert.ok(csv.slice(1).every((r) => r[0] === '双十一回访' && r[1] === '放音' && r[3]), 'every row names the task');
  assert.ok(csv.some((r) => r[2] === '13700000011'));
  assert.equal(csvDownload.suggestedFilename(), '双十一回访.csv');

  const [xlsxDownload] = await Promise.all([page.waitForEvent('download'), page.click('#export-xlsx')]);
  const xlsx = xlsxRows(readFileSync(await xlsxDownload.path()));
  assert.deepEqual(xlsx[0], header);
  assert.equal(xlsx.length, 40);
  assert.deepEqual(xlsx.map((r) => r[2]).slice(1).sort(), csv.map((r) => r[2]).slice(1).sort(), 'the same numbers as the CSV');
  await screenshot(page, '08-exports');
  w.check('export');
});

test('clone with numbers, slow it down, start and stop it from the list, delete it', async () => {
  await page.goto(`${server.base}/#/tasks`);
  await page.locator(`tr[data-task="${taskId}"] .act-clone`).click();
  await page.fill('#clone-name', '双十一回访（第二轮）');
  assert.ok(await page.isChecked('#clone-numbers'));
  await page.click('#clone-confirm');
  const cloned = page.locator('tr', { hasText: '双十一回访（第二轮）' });
  await cloned.waitFor();
  const cloneId = await cloned.getAttribute('data-task');
  assert.match(await cloned.locator('.progress-text').innerText(), /^0\/39/);
  // One call every 10 s: it is still running when stopped.
  await page.goto(`${server.base}/#/tasks/${cloneId}/edit`);
  await page.fill('#f-max_caps', '0.1');
  await page.click('#save-task');
  await page.waitForURL(new RegExp(`#/tasks/${cloneId}$`));
  await page.goto(`${server.base}/#/tasks`);
  const row = page.locator(`tr[data-task="${cloneId}"]`);
  await row.locator('input[type=checkbox]').check();
  await page.click('#bulk-start');
  await row.locator('.badge.st-running').waitFor();
  await screenshot(page, '09-list-running');
  await row.locator('input[type=checkbox]').check();
  await page.click('#bulk-stop');
  await row.locator('.badge.st-stop').waitFor();
  // A clone without numbers.
  await page.locator(`tr[data-task="${taskId}"] .act-clone`).click();
  await page.fill('#clone-name', '空白副本');
  await page.uncheck('#clone-numbers');
  await page.click('#clone-confirm');
  await page.locator('tr', { hasText: '空白副本' }).locator('.progress-text', { hasText: '0/0' }).waitFor();
  // Delete asks first; cancel keeps the task.
  await row.locator('.act-delete').click();
  await page.locator('.modal', { hasText: '双十一回访（第二轮）' }).waitFor();
  await page.locator('.modal button', { hasText: '取消' }).click();
  assert.equal(await row.count(), 1);
  await row.locator('.act-delete').click();
  await page.click('#delete-confirm');
  await row.waitFor({ state: 'detached' });
  // Search and status filter.
  await page.fill('#task-search', '空白');
  await poll('the search to narrow the list', async () => (await page.locator('tbody tr[data-task]').count()) === 1);
  await page.fill('#task-search', '');
  await page.selectOption('#status-filter', 'done');
  await poll('the status filter', async () => (await page.locator('tbody tr[data-task]').allInnerTexts()).join('|').includes('双十一回访')
    && (await page.locator('tbody tr[data-task]').count()) === 1);
  await page.selectOption('#status-filter', '');
  await screenshot(page, '10-list-after-clone-delete');
  w.check('stop, clone, delete');
});

test('the live stream reconnects by itself after outcall restarts, and the list follows it', async () => {
  // While outcall is down, the stream's reconnections and the page's token check cannot connect.
  w.expectUnreachable(/\/api\/(events|out_call_tasks\?perPage=1)/);
  await page.goto(`${server.base}/#/tasks`);
  await page.locator('.live-dot.on').waitFor();
  await page.evaluate(() => { window.stayedOnPage = true; });
  await server.kill();
  await page.locator('.live-dot.off').waitFor();
  await server.start();
  await page.locator('.live-dot.on').waitFor({ timeout: 20000 });
  // A campaign started behind the page's back shows up through the stream alone.
  const token = await apiToken(server.base);
  const empty = page.locator('tr', { hasText: '空白副本' });
  const id = await empty.getAttribute('data-task');
  const numbers = ['13600000000', '13600000001', '13600000002', '13600000003', '13600000004'];
  await apiCall(server.base, token, 'POST', `/api/out_call_tasks/${id}/import`, { data: numbers.map((n) => ({ dest_number: n, external_id: '' })) });
  await apiCall(server.base, token, 'PUT', '/api/out_call_tasks', { action: 'start', data: [id] });
  await empty.locator('.badge.st-done').waitFor({ timeout: 20000 });
  await empty.locator('.progress-text', { hasText: '5/5' }).waitFor();
  assert.ok(await page.evaluate(() => window.stayedOnPage), 'the page was not reloaded');
  w.check('reconnect');
});

test('switch the language: English, kept across a reload', async () => {
  await page.click('#lang-switch');
  await page.locator('h2', { hasText: 'Call tasks' }).waitFor();
  await page.reload();
  await page.locator('h2', { hasText: 'Call tasks' }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('outcall.lang')), 'en');
  await page.goto(`${server.base}/#/tasks/${taskId}`);
  await page.locator('[data-stat=answered] .stat-label', { hasText: 'Answered' }).waitFor();
  await screenshot(page, '11-english');
  await page.click('#lang-switch');
  await page.locator('[data-stat=answered] .stat-label', { hasText: '已接通' }).waitFor();
  w.check('switch language');
});

test('an expired token returns to the log-in screen with a message; log out', async () => {
  w.expect(401, /\/api\//);
  // The detail page, reloaded with a token the server no longer knows.
  await page.evaluate(() => sessionStorage.setItem('outcall.token', 'expired-token'));
  await page.reload();
  await page.waitForURL(/#\/login$/);
  await page.locator('.notice.info', { hasText: '登录已过期' }).waitFor();
  await screenshot(page, '12-session-expired');
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL(/#\/tasks$/);
  await page.locator('.live-dot.on').waitFor();
  w.check('expired token');

  // The token is revoked while the page sits idle, then outcall restarts: the stream's
  // reconnection is refused (401) and the page returns to the log-in screen by itself.
  w.expect(401, /\/api\//);
  w.expectUnreachable(/\/api\/(events|out_call_tasks\?perPage=1)/);
  const token = await page.evaluate(() => sessionStorage.getItem('outcall.token'));
  await apiCall(server.base, token, 'DELETE', '/api/sessions');
  await server.restart();
  await page.waitForURL(/#\/login$/, { timeout: 20000 });
  await page.locator('.notice.info', { hasText: '登录已过期' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('outcall.token')), null);
  w.check('a revoked token on reconnection');

  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL(/#\/tasks$/);
  await page.click('#logout');
  await page.waitForURL(/#\/login$/);
  await page.locator('.notice.info', { hasText: '已退出登录' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('outcall.token')), null);
  await page.goto(`${server.base}/#/tasks`);
  await page.waitForURL(/#\/login$/);
  await screenshot(page, '13-logged-out');
  w.check('log out');
});
