/**
 * The training report renders in a real browser: headless Chromium loads report.html and its
 * DOM holds both charts with their lines and the epoch table. Skips, saying why, where
 * Chromium is not installed (`apt-get install chromium`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { writeReport, type MetricRecord } from '../src/train/report.js';

const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));

function records(): MetricRecord[] {
  const out: MetricRecord[] = [];
  for (let e = 0; e < 3; e++) {
    for (let k = 1; k <= 4; k++) out.push({ kind: 'step', epoch: e + k / 4, step: e * 4 + k, time: e * 10 + k, loss: 2 / (1 + e + k / 4), lr: 0.01 });
    out.push({ kind: 'epoch', epoch: e + 1, step: (e + 1) * 4, time: (e + 1) * 10, trainLoss: 1 / (e + 1), testLoss: 1.1 / (e + 1), testTop1: 0.8 + 0.05 * e, testTop5: 0.99, lr: 0.01, imagesPerSecond: 1000 });
  }
  return out;
}

describe('report.html', () => {
  it('renders in headless Chromium with both charts and the epoch table', (ctx) => {
    if (!chromium) {
      console.log('skipped: no Chromium on this machine (apt-get install chromium)');
      ctx.skip();
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'convnet-report-'));
    try {
      const file = path.join(dir, 'report.html');
      writeReport(file, { title: 'a test run', settings: [['model', 'alexnet-mini']], records: records(), status: 'epoch 3 of 3 done' });
      const r = spawnSync(chromium!, [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', `--user-data-dir=${path.join(dir, 'profile')}`, '--dump-dom', `file://${file}`,
      ], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status).toBe(0);
      const dom = r.stdout;
      expect(dom.match(/<svg /g)).toHaveLength(2);
      expect(dom).toContain('Training loss');
      expect(dom).toContain('Test accuracy');
      // Four lines: batch loss, test loss, top-1, top-5.
      expect(dom.match(/<path d="M/g)).toHaveLength(4);
      expect(dom.match(/<tr><td>\d+<\/td>/g)).toHaveLength(3);
      expect(dom).toContain('90.00%');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
