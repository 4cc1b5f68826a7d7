// Issue 11's screens in real Chromium against the real binary on the sim back end: the editor's
// retries, calling hours and webhook fields (saved, shown back, a refusal under its field); the
// detail screen's waiting state (calling hours, retry), webhook deliveries and a number's
// attempts; the do-not-call screen; an import's duplicate and do-not-call counts.
// Each flow fails on any console error, page error, failed request or error answer it did not
// expect, and saves a screenshot in target/e2e-screenshots/.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, beforeEach, test } from 'node:test';
import { apiCall, apiToken, loggedInPage, poll, screenshot, startOutcall } from './lib.mjs';

let server;
let w; // the watched page
let page;
let token;
const cleanup = [];

before(async () => {
  server = await startOutcall(['--backend', 'sim', '--sim-time-scale', '0.01', '--tz', 'UTC']);
  token = await apiToken(server.base);
  w = await loggedInPage(server.base, cleanup);
  page = w.page;
});

beforeEach(() => w?.reset());

after(async () => {
  for (const step of cleanup.reverse()) await step();
  await server?.stop();
});

const checked = (selector) => page.locator(selector).isChecked();

test('the editor saves retries, calling hours and the webhook, refuses a bad window under its field, and shows them back', async () => {
  w.expect(400, /\/api\/out_call_tasks$/);
  await page.goto(`${server.base}/#/tasks/new`);
  for (const group of ['重拨与呼叫时段', '结果推送（Webhook）']) await page.locator('legend', { hasText: group }).waitFor();
  // A new task shows the defaults: one attempt, 300 s, the six default causes.
  assert.equal(await page.inputValue('#f-max_attempts'), '1');
  assert.equal(await page.inputValue('#f-retry_interval'), '300');
  for (const cause of ['USER_BUSY', 'NO_ANSWER', 'NORMAL_CIRCUIT_CONGESTION']) assert.ok(await checked(`input[name=retry_causes][value=${cause}]`), cause);
  assert.ok(!(await checked('input[name=retry_causes][value=CALL_REJECTED]')));

  await page.fill('#f-group_name', '重拨回访');
  await page.fill('#f-max_attempts', '3');
  await page.fill('#f-retry_interval', '120');
  await page.uncheck('input[name=retry_causes][value=NO_USER_RESPONSE]');
  await page.check('input[name=retry_causes][value=CALL_REJECTED]');
  await page.fill('#f-retry_causes-other', 'ORIGINATOR_CANCEL');
  await page.fill('#f-call_windows', '09:00-12:00,25:00-26:00');
  for (const day of [1, 2, 3, 4, 5]) await page.check(`input[name=call_weekdays][value="${day}"]`);
  await page.fill('#f-time_zone', 'Asia/Shanghai');
  await page.fill('#f-task_end_time', '2030-01-31 18:00:00');
  await page.fill('#f-webhook_url', 'http://127.0.0.1:9/outcall-hook');
  await page.click('#save-task');
  const error = page.locator('[data-field=call_windows] .field-error');
  await error.waitFor();
  assert.match(await error.innerText(), /^call_windows .*25:00-26:00/);
  assert.equal(await page.locator('.field-error').count(), 1, 'only the field named has an error');
  await screenshot(page, 'i11-01-editor-refused-window');

  await page.fill('#f-call_windows', '09:00-12:00,22:00-02:00');
  await page.click('#save-task');
  await page.waitForURL(/#\/tasks\/\d+$/);
  const id = Number(/#\/tasks\/(\d+)$/.exec(page.url())[1]);
  const task = await apiCall(server.base, token, 'GET', `/api/out_call_tasks/${id}`);
  assert.equal(task.group_name, '重拨回访');
  assert.equal(task.max_attempts, 3);
  assert.equal(task.retry_interval, 120);
  assert.deepEqual(task.retry_causes.split(',').sort(), [
    'CALL_REJECTED', 'NORMAL_CIRCUIT_CONGESTION', 'NORMAL_TEMPORARY_FAILURE', 'NO_ANSWER', 'ORIGINATOR_CANCEL',
    'RECOVERY_ON_TIMER_EXPIRE', 'USER_BUSY',
  ]);
  assert.equal(task.call_windows, '09:00-12:00,22:00-02:00');
  assert.equal(task.call_weekdays, '1-5');
  assert.equal(task.time_zone, 'Asia/Shanghai');
  assert.equal(task.task_end_time, '2030-01-31 18:00:00');
  assert.equal(task.webhook_url, 'http://127.0.0.1:9/outcall-hook');

  // Shown back in the editor; a change of one field sends only that field.
  await page.goto(`${server.base}/#/tasks/${id}/edit`);
  await page.locator('#f-max_attempts').waitFor();
  assert.equal(await page.inputValue('#f-max_attempts'), '3');
  assert.equal(await page.inputValue('#f-retry_interval'), '120');
  assert.ok(await checked('input[name=retry_causes][value=CALL_REJECTED]'));
  assert.ok(!(await checked('input[name=retry_causes][value=NO_USER_RESPONSE]')));
  assert.equal(await page.inputValue('#f-retry_causes-other'), 'ORIGINATOR_CANCEL');
  assert.equal(await page.inputValue('#f-call_windows'), '09:00-12:00,22:00-02:00');
  for (const day of [1, 2, 3, 4, 5]) assert.ok(await checked(`input[name=call_weekdays][value="${day}"]`), `day ${day}`);
  for (const day of [6, 7]) assert.ok(!(await checked(`input[name=call_weekdays][value="${day}"]`)), `day ${day}`);
  assert.equal(await page.inputValue('#f-time_zone'), 'Asia/Shanghai');
  assert.equal(await page.inputValue('#f-task_end_time'), '2030-01-31 18:00:00');
  assert.equal(await page.inputValue('#f-webhook_url'), 'http://127.0.0.1:9/outcall-hook');
  await screenshot(page, 'i11-02-editor-shown-back');
  await page.check('input[name=call_weekdays][value="7"]');
  const [request] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'PUT' && r.url().endsWith(`/api/out_call_tasks/${id}`)),
    page.click('#save-task'),
  ]);
  assert.deepEqual(JSON.parse(request.postData()), { call_weekdays: '1-5,7' });
  await page.waitForURL(new RegExp(`#/tasks/${id}$`));
  assert.equal((await apiCall(server.base, token, 'GET', `/api/out_call_tasks/${id}`)).call_weekdays, '1-5,7');
  w.check('the editor');
});

/** A task made through the API with `settings`, its `numbers` imported, started. */
async function runningTask(name, settings, numbers) {
  const id = (await apiCall(server.base, token, 'POST', '/api/out_call_tasks', { group_name: name, max_caps: 10, max_concurrency: 5, ...settings })).data;
  await apiCall(server.base, token, 'POST', `/api/out_call_tasks/${id}/import`, { data: numbers.map((n) => ({ dest_number: n, external_id: '' })) });
  await apiCall(server.base, token, 'PUT', '/api/out_call_tasks', { action: 'start', data: [String(id)] });
  return id;
}

const stats = async (id) => (await apiCall(server.base, token, 'GET', `/api/out_call_tasks/${id}/stats`)).data;

test('the detail screen shows a task waiting for its calling hours, until when, and the line goes at a stop', async () => {
  // A window that opens two hours from now (the server runs in UTC: --tz UTC).
  const now = new Date();
  const hh = (h) => String(h).padStart(2, '0');
  const opens = (now.getUTCHours() + 2) % 24;
  const id = await runningTask('等待时段', { call_windows: `${hh(opens)}:00-${hh((opens + 1) % 24)}:00`, time_zone: 'UTC' }, ['13300000001']);
  const at = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), now.getUTCHours() + 2));
  const until = at.toISOString().slice(0, 19).replace('T', ' ');
  await poll('the stats to say it waits', async () => (await stats(id)).waiting === 'call_window');
  assert.equal((await stats(id)).waiting_until, until);
  await page.goto(`${server.base}/#/tasks/${id}`);
  const line = page.locator('#waiting-state');
  await line.waitFor();
  assert.equal(await line.innerText(), `等待呼叫时段，至 ${until}`);
  assert.equal(await line.getAttribute('data-waiting'), 'call_window');
  assert.equal(await page.locator('[data-stat=init] .stat-value').innerText(), '1', 'nothing was dialed');
  await screenshot(page, 'i11-05-waiting-window');
  await page.click('#lang-switch');
  await line.filter({ hasText: `Waiting for the calling hours, until ${until}` }).waitFor();
  await page.click('#lang-switch');
  await line.filter({ hasText: '等待呼叫时段' }).waitFor();
  // A stop ends the wait: the line goes, through the event stream alone.
  await page.click('#detail-stop');
  await line.waitFor({ state: 'detached' });
  w.check('waiting for the calling hours');
});

test('the detail screen shows the webhook deliveries: pending with the last error, then delivered', async () => {
  // A receiver in the test: 500 until told otherwise, then 200.
  let status = 500;
  const received = [];
  const receiver = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      received.push(body);
      response.writeHead(status, { 'Content-Type': 'text/plain' }).end('ok');
    });
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise((resolve) => receiver.close(resolve)));
  const url = `http://127.0.0.1:${receiver.address().port}/outcall`;
  const id = await runningTask('结果推送', { webhook_url: url }, ['13200000003']);
  await poll('a refused delivery', async () => {
    const s = await stats(id);
    return s.status === 'done' && s.webhooks.pending === 1 && s.webhooks.last_error === 'HTTP 500';
  }, 30000);
  await page.goto(`${server.base}/#/tasks/${id}`);
  const state = page.locator('#webhook-state');
  await state.waitFor();
  assert.equal(await state.locator('[data-webhook=pending] b').innerText(), '1');
  assert.equal(await state.locator('[data-webhook=delivered] b').innerText(), '0');
  assert.match(await state.locator('.webhook-error').innerText(), /HTTP 500/);
  await screenshot(page, 'i11-06-webhook-pending');
  status = 200;
  await poll('the delivery on a later try', async () => (await stats(id)).webhooks.delivered === 1, 30000);
  await page.reload();
  await state.locator('[data-webhook=delivered] b', { hasText: '1' }).waitFor();
  assert.equal(await state.locator('[data-webhook=pending] b').innerText(), '0');
  assert.equal(await state.locator('.webhook-error').count(), 0, 'no error once delivered');
  assert.ok(received.length >= 2 && received.every((body) => body.includes('13200000003')));
  w.check('webhook deliveries');
});

test('the detail screen lists the attempts of a number', async () => {
  // Busy (last digit 4) twice, one second apart; answered (3) once.
  const id = await runningTask('重拨记录', { max_attempts: 2, retry_interval: 1 }, ['13500000004', '13500000003']);
  await poll('the task to end', async () => (await stats(id)).status === 'done', 30000);
  await page.goto(`${server.base}/#/tasks/${id}`);
  await page.locator('[data-stat=retry_pending] .stat-value', { hasText: '0' }).waitFor();
  const busy = page.locator('.numbers-table tr[data-number="13500000004"]');
  await busy.locator('.act-attempts').click();
  const rows = page.locator('#attempts-table tbody tr[data-attempt]');
  await poll('two attempts', async () => (await rows.count()) === 2);
  const texts = await rows.allInnerTexts();
  assert.match(texts[0], /^1\s/);
  assert.match(texts[1], /^2\s/);
  assert.ok(texts.every((row) => /USER_BUSY/.test(row)), texts.join('|'));
  const uuids = await page.locator('#attempts-table .uuid code').evaluateAll((codes) => codes.map((c) => c.title));
  assert.equal(new Set(uuids).size, 2, 'each attempt has its own call');
  const number = (await apiCall(server.base, token, 'GET', `/api/out_call_tasks/${id}/numbers?dest_number=13500000004`)).data[0];
  assert.equal(uuids[1], number.uuid, "the number's row shows the latest attempt");
  await screenshot(page, 'i11-04-attempts');
  await page.click('#attempts-close');
  await page.locator('.numbers-table tr[data-number="13500000003"] .act-attempts').click();
  await poll('one attempt of the answered number', async () => (await rows.count()) === 1);
  assert.match(await rows.first().innerText(), /NORMAL_CLEARING/);
  await page.keyboard.press('Escape');
  await page.locator('#attempts-table').waitFor({ state: 'detached' });
  w.check('attempts');
});

test('the detail screen shows a task waiting for a retry and the numbers awaiting one', async () => {
  // Busy, then a retry an hour later: the task waits for it.
  const id = await runningTask('等待重拨', { max_attempts: 2, retry_interval: 3600 }, ['13300000004']);
  await poll('the stats to say it waits for the retry', async () => (await stats(id)).waiting === 'retry', 30000);
  const s = await stats(id);
  assert.equal(s.retry_pending, 1);
  await page.goto(`${server.base}/#/tasks/${id}`);
  const line = page.locator('#waiting-state');
  await line.filter({ hasText: `等待重拨，至 ${s.waiting_until}` }).waitFor();
  await page.locator('[data-stat=retry_pending] .stat-value', { hasText: '1' }).waitFor();
  await page.locator('.numbers-table tr[data-number="13300000004"] .act-attempts').click();
  await poll('the first attempt', async () => (await page.locator('#attempts-table tbody tr[data-attempt]').count()) === 1);
  await screenshot(page, 'i11-07-waiting-retry');
  await page.click('#attempts-close');
  await page.click('#detail-stop');
  await line.waitFor({ state: 'detached' });
  w.check('waiting for a retry');
});

test('the do-not-call screen adds pasted numbers (for all tasks or one), finds them by prefix and deletes one', async () => {
  w.expect(400, /\/api\/dnc$/);
  const taskId = (await apiCall(server.base, token, 'POST', '/api/out_call_tasks', { group_name: '免打扰范围' })).data;
  await page.goto(`${server.base}/#/tasks`);
  await page.click('#nav-dnc');
  await page.waitForURL(/#\/dnc$/);
  await page.locator('#dnc-table td.empty').waitFor();
  // A bad number refuses the whole paste, naming its row; nothing is added.
  await page.fill('#dnc-numbers', '13900000001\n12ab');
  await page.click('#dnc-add');
  await page.locator('.dnc-add .notice.error', { hasText: 'data[1].number' }).waitFor();
  assert.equal((await apiCall(server.base, token, 'GET', '/api/dnc')).rowCount, 0);

  await page.fill('#dnc-numbers', '13900000001\n13900000002\n13800000003');
  await page.fill('#dnc-note', '客户投诉');
  await page.click('#dnc-add');
  await page.locator('.notice.info', { hasText: '已添加 3 个，已在名单中 0 个' }).waitFor();
  await page.locator('#dnc-table tr[data-dnc]').nth(2).waitFor();
  // The same number for one task is another entry; one already listed for all tasks is a duplicate.
  await page.fill('#dnc-numbers', '13900000001, 13900000009');
  await page.fill('#dnc-note', '');
  await page.selectOption('#dnc-scope', String(taskId));
  await page.click('#dnc-add');
  await page.locator('.notice.info', { hasText: '已添加 2 个，已在名单中 0 个' }).waitFor();
  await page.fill('#dnc-numbers', '13900000002');
  await page.selectOption('#dnc-scope', '');
  await page.click('#dnc-add');
  await page.locator('.notice.info', { hasText: '已添加 0 个，已在名单中 1 个' }).waitFor();

  await page.fill('#dnc-search', '1390');
  await poll('the prefix search', async () => {
    const rows = await page.locator('#dnc-table tr[data-dnc]').evaluateAll((trs) => trs.map((tr) => tr.dataset.dnc));
    return rows.length === 4 && rows.every((n) => n.startsWith('1390'));
  });
  const scoped = page.locator('#dnc-table tr[data-dnc="13900000009"]');
  assert.match(await scoped.innerText(), new RegExp(`#${taskId} 免打扰范围`));
  await page.fill('#dnc-search', '138');
  await poll('one entry under 138', async () => (await page.locator('#dnc-table tr[data-dnc]').count()) === 1);
  const row = page.locator('#dnc-table tr[data-dnc="13800000003"]');
  assert.match(await row.innerText(), /全部任务\s+客户投诉/);
  await screenshot(page, 'i11-03-dnc');
  await row.locator('.act-delete').click();
  await page.click('#dnc-delete-confirm');
  await page.locator('#dnc-table td.empty').waitFor();
  await page.locator('.notice.info', { hasText: '13800000003' }).waitFor();
  const left = await apiCall(server.base, token, 'GET', '/api/dnc?perPage=100');
  assert.equal(left.rowCount, 4);
  assert.ok(left.data.every((entry) => entry.number !== '13800000003'));
  w.check('the do-not-call screen');
});

test('an import shows the duplicates skipped and the numbers on the do-not-call list', async () => {
  const id = (await apiCall(server.base, token, 'POST', '/api/out_call_tasks', { group_name: '去重导入' })).data;
  await page.goto(`${server.base}/#/tasks/${id}/import`);
  // 13900000001 is listed for every task (the flow above); 13100000001 comes twice.
  await page.fill('#paste-numbers', ['13900000001', '13100000001', '13100000001'].join('\n'));
  await page.click('#import-send');
  await page.locator('#import-result').waitFor();
  assert.equal(await page.locator('#imported-count').innerText(), '2');
  assert.equal(await page.locator('#duplicates-count').innerText(), '1');
  assert.equal(await page.locator('#dnc-count').innerText(), '1');
  await screenshot(page, 'i11-08-import-counts');
  await page.click('#import-to-task');
  const listed = page.locator('.numbers-table tr[data-number="13900000001"]');
  await listed.waitFor();
  assert.match(await listed.innerText(), /已完成\s+DNC/);
  w.check('import counts');
});
