// Playing a recording from the numbers table: outcall on the sip back end calls a sipp callee
// with auto_record=1, and the page's <audio> element plays the WAV through ?token=. Skipped, with
// the reason printed, only when sipp is not installed.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ROOT, apiCall, apiToken, loggedInPage, poll, screenshot, sineWav, startOutcall } from './lib.mjs';

const hasSipp = spawnSync('sipp', ['-v']).error === undefined;
const cleanup = [];
after(async () => { for (const fn of cleanup.reverse()) await fn(); });

function freeUdpPort() {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

test('play a call recording from the numbers table (sip back end, sipp callee)', { skip: hasSipp ? false : 'sipp is not installed (Debian package sip-tester)' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'outcall-e2e-sipp-'));
  const sipPort = await freeUdpPort();
  const sipp = spawn('sipp', [
    '-sf', join(ROOT, 'tests/sipp/answer_then_hangup.xml'), '-i', '127.0.0.1', '-p', String(sipPort),
    '-ci', '127.0.0.1', '-cp', String(await freeUdpPort()), '-mi', '127.0.0.1', '-mp', String(await freeUdpPort()),
    '-m', '1', '-nostdin', '-timeout', '60s', '-timeout_error',
  ], { cwd: dir, stdio: 'ignore' });
  cleanup.push(async () => { if (sipp.exitCode === null) sipp.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); });
  const rtp = 31000 + Math.floor(Math.random() * 2000) * 2;
  const server = await startOutcall([
    '--backend', 'sip', '--sip-trunk', `127.0.0.1:${sipPort}`, '--sip-bind', `127.0.0.1:${await freeUdpPort()}`,
    '--rtp-ports', `${rtp}-${rtp + 40}`,
  ]);
  cleanup.push(() => server.stop());

  // Set-up through the API: a prompt, a recorded task with one number, run to its end.
  const token = await apiToken(server.base);
  const form = new FormData();
  form.append('file', new Blob([sineWav(3000)], { type: 'audio/wav' }), 'prompt.wav');
  const media = await (await fetch(`${server.base}/api/media_files`, { method: 'POST', headers: { 'X-XTRA-AUTH-ID': token }, body: form })).json();
  const created = await apiCall(server.base, token, 'POST', '/api/out_call_tasks', {
    group_name: '录音回放', action: 'playback', data: JSON.stringify(media.data), auto_record: 1, calling_time: 10,
  });
  const id = created.data;
  await apiCall(server.base, token, 'POST', `/api/out_call_tasks/${id}/import`, { data: [{ dest_number: '1001', external_id: 'rec' }] });
  await apiCall(server.base, token, 'PUT', '/api/out_call_tasks', { action: 'start', data: [String(id)] });
  await poll('the recorded call to end', async () => {
    const numbers = await apiCall(server.base, token, 'GET', `/api/out_call_tasks/${id}/numbers`);
    return numbers.data[0].call_status === 'done' && numbers.data[0].record_path;
  }, 30000);

  const w = await loggedInPage(server.base, cleanup);
  const { page } = w;
  await page.goto(`${server.base}/#/tasks/${id}`);
  const audio = page.locator('tr[data-number="1001"] audio');
  await audio.waitFor();
  assert.match(await audio.getAttribute('src'), /\/recording\?token=/);
  await audio.evaluate((el) => el.play());
  const played = await poll('the recording to play', () => audio.evaluate((el) => !el.error && el.currentTime > 0.2 && el.duration));
  assert.ok(played > 0.5 && played < 3, `the recording lasts about the 1 s call: ${played} s`);
  await screenshot(page, '14-recording-playback');
  w.check('play a recording');
});
