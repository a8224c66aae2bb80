/**
 * The training report: one self-contained HTML file (inline SVG, no scripts, no network) with
 * the loss and accuracy curves, written next to the metrics after every epoch.
 */
import { writeFileSync, renameSync } from 'node:fs';

/** One line of metrics.jsonl. `kind` says whether it is a periodic training log or an epoch end. */
export interface MetricRecord {
  kind: 'step' | 'epoch';
  epoch: number;
  step: number;
  time: number;
  loss?: number;
  lr?: number;
  imagesPerSecond?: number;
  testTop1?: number;
  testTop5?: number;
  testLoss?: number;
  trainLoss?: number;
  trainTop1?: number;
}

interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

function escape(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

function niceTicks(lo: number, hi: number, count: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** An SVG line chart of the series, with axes, ticks and a legend. */
export function lineChart(title: string, xLabel: string, series: Series[], yRange?: [number, number]): string {
  const W = 640, H = 320, L = 56, R = 16, T = 48, B = 44;
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="80" role="img"><text x="10" y="40" font-size="14">${escape(title)}: no data yet</text></svg>`;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = yRange ?? [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escape(title)}">`);
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${escape(title)}</text>`);
  for (const t of niceTicks(y0, y1, 5)) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${L - 6}" y="${py(t) + 4}" text-anchor="end" font-size="11">${t}</text>`);
  }
  for (const t of niceTicks(x0, x1, 8)) {
    parts.push(`<line x1="${px(t)}" x2="${px(t)}" y1="${H - B}" y2="${H - B + 4}" stroke="#333"/>`);
    parts.push(`<text x="${px(t)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${t}</text>`);
  }
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`);
  parts.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle" font-size="12">${escape(xLabel)}</text>`);
  series.forEach((s, k) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, i) => `${i ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    if (s.points.length < 40) {
      for (const p of s.points) parts.push(`<circle cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
    // The legend sits between the title and the plot, where no line can run under it.
    const lx = L + k * 150;
    parts.push(`<rect x="${lx}" y="${T - 20}" width="12" height="12" fill="${s.color}"/>`);
    parts.push(`<text x="${lx + 16}" y="${T - 10}" font-size="12">${escape(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export interface ReportInfo {
  title: string;
  /** Rows for the settings table, e.g. ['model', 'alexnet-mini (width 0.5)']. */
  settings: [string, string][];
  records: MetricRecord[];
  status: string;
}

/** The report as HTML text. */
export function renderReport(info: ReportInfo): string {
  const steps = info.records.filter((r) => r.kind === 'step' && r.loss !== undefined);
  const epochs = info.records.filter((r) => r.kind === 'epoch');
  const lossChart = lineChart('Training loss', 'epoch', [
    { name: 'batch loss', color: '#1f77b4', points: steps.map((r) => [r.epoch, r.loss!] as [number, number]) },
    { name: 'test loss', color: '#d62728', points: epochs.filter((r) => r.testLoss !== undefined).map((r) => [r.epoch, r.testLoss!] as [number, number]) },
  ]);
  const accChart = lineChart('Test accuracy', 'epoch', [
    { name: 'top-1', color: '#2ca02c', points: epochs.filter((r) => r.testTop1 !== undefined).map((r) => [r.epoch, r.testTop1!] as [number, number]) },
    { name: 'top-5', color: '#9467bd', points: epochs.filter((r) => r.testTop5 !== undefined).map((r) => [r.epoch, r.testTop5!] as [number, number]) },
  ]);
  const rows = epochs
    .map((r) => `<tr><td>${r.epoch}</td><td>${r.trainLoss?.toFixed(4) ?? ''}</td><td>${r.testLoss?.toFixed(4) ?? ''}</td><td>${r.testTop1 !== undefined ? (100 * r.testTop1).toFixed(2) + '%' : ''}</td><td>${r.testTop5 !== undefined ? (100 * r.testTop5).toFixed(2) + '%' : ''}</td><td>${r.lr ?? ''}</td><td>${r.imagesPerSecond?.toFixed(0) ?? ''}</td><td>${r.time.toFixed(0)}</td></tr>`)
    .join('\n');
  const settings = info.settings.map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v)}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escape(info.title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1000px; }
table { border-collapse: collapse; margin: 12px 0; }
td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f4f4f4; text-align: left; }
#settings td { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
</style>
</head>
<body>
<h1>${escape(info.title)}</h1>
<p id="status">${escape(info.status)}</p>
<div class="charts">
${lossChart}
${accChart}
</div>
<h2>Epochs</h2>
<table id="epochs">
<tr><th>epoch</th><th>train loss</th><th>test loss</th><th>test top-1</th><th>test top-5</th><th>learning rate</th><th>images/s</th><th>elapsed s</th></tr>
${rows}
</table>
<h2>Settings</h2>
<table id="settings">
${settings}
</table>
</body>
</html>
`;
}

/** Writes the report atomically (a reader never sees half a file). */
export function writeReport(path: string, info: ReportInfo): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, renderReport(info));
  renameSync(tmp, path);
}
