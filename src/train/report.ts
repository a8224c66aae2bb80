/**
 * The training report: one self-contained HTML file (inline SVG and PNG, no scripts, no network)
 * with the loss and accuracy curves, written next to the metrics after every epoch; and, when
 * the trainer provides them, each tower's conv1 filters (the paper's Figure 3), validation
 * images with their top-5 predictions, the peak memory of each device, and the time of each op
 * on each device over a few traced steps with a timeline of the devices side by side.
 */
import { writeFileSync, renameSync } from 'node:fs';

import type { TraceEvent } from '../device.js';
import { encodePng, imageGrid, pngDataUri } from './png.js';

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

/** A validation image with the model's five most probable classes. */
export interface SampleImage {
  /** The patch as the network saw it (mean-subtracted), `[C, H, W]`. */
  pixels: Float32Array;
  /** `[C, H, W]`. */
  shape: [number, number, number];
  /** The true class's name. */
  label: string;
  /** The five most probable classes, most probable first: [name, probability]. */
  top5: [string, number][];
}

/** One tower's conv1 filters, `[F, C, K, K]` on the host. */
export interface FilterSet {
  /** A caption, e.g. `tower A (cuda:0)`. */
  tower: string;
  /** The weights, row-major. */
  weights: Float32Array;
  /** `[F, C, K, K]`. */
  shape: [number, number, number, number];
}

/** The optional parts of the report. */
export interface ReportExtras {
  /** conv1's filters, one set a tower. */
  filters?: FilterSet[];
  /** A few validation images with their predictions. */
  samples?: SampleImage[];
  /** The most bytes in use at once on each device. */
  peakBytes?: Record<string, number>;
  /** Every op the devices ran over a few traced training steps. */
  trace?: { steps: [number, number]; events: TraceEvent[] };
}

export interface ReportInfo extends ReportExtras {
  title: string;
  /** Rows for the settings table, e.g. ['model', 'alexnet-mini (width 0.5)']. */
  settings: [string, string][];
  records: MetricRecord[];
  status: string;
}

/** The filters of each tower as PNG grids, 8 a row, each filter scaled to [0, 255] on its own. */
function filtersHtml(sets: FilterSet[]): string {
  const figs = sets.map((f) => {
    const [F, C, K] = f.shape;
    const size = C * K * K;
    const images = Array.from({ length: F }, (_, i) => ({ data: f.weights.subarray(i * size, (i + 1) * size), shape: [C, K, K] as [number, number, number] }));
    const g = imageGrid(images, 8, Math.max(1, Math.round(44 / K)), 2);
    return `<figure><img alt="${escape(f.tower)} conv1 filters" width="${g.width}" height="${g.height}" src="${pngDataUri(encodePng(g.width, g.height, g.channels, g.pixels))}"><figcaption>${escape(f.tower)}: ${F} filters ${C}x${K}x${K}</figcaption></figure>`;
  });
  return `<h2>conv1 filters</h2>\n<div class="figs" id="filters">\n${figs.join('\n')}\n</div>`;
}

function samplesHtml(samples: SampleImage[]): string {
  const figs = samples.map((s) => {
    const [, H] = s.shape;
    const g = imageGrid([{ data: s.pixels, shape: s.shape }], 1, Math.max(1, Math.round(112 / H)), 0);
    const list = s.top5.map(([name, p]) => `<li${name === s.label ? ' class="right"' : ''}>${escape(name)} ${(100 * p).toFixed(1)}%</li>`).join('');
    return `<figure class="sample"><img alt="${escape(s.label)}" width="${g.width}" height="${g.height}" src="${pngDataUri(encodePng(g.width, g.height, g.channels, g.pixels))}"><figcaption>true: <b>${escape(s.label)}</b><ol>${list}</ol></figcaption></figure>`;
  });
  return `<h2>Validation images and their top-5 predictions</h2>\n<div class="figs" id="samples">\n${figs.join('\n')}\n</div>`;
}

function memoryHtml(peak: Record<string, number>): string {
  const rows = Object.entries(peak).map(([d, b]) => `<tr><td>${escape(d)}</td><td>${(b / 2 ** 30).toFixed(3)}</td><td>${b}</td></tr>`).join('\n');
  return `<h2>Peak memory</h2>\n<table id="memory">\n<tr><th>device</th><th>GiB</th><th>bytes</th></tr>\n${rows}\n</table>\n<p>The most bytes the allocator had in use at once on each device over the run (weights, momentum, gradients and activations; blocks rounded as allocated).</p>`;
}

/**
 * Whether a traced op is one half of a copy between devices (drawn highlighted): the queues
 * label them `copy_out` (the source's side) and `copy_in` (the destination's). `copy_blocks`,
 * the copy inside one device that concat and split use, is not one.
 */
export function isCopyOp(op: string): boolean {
  return /^copy_(in|out|peer)$/.test(op);
}

/** Time per op and device over the traced steps: [device, op, count, total ms], slowest first per device. */
export function opTimes(events: TraceEvent[]): [string, string, number, number][] {
  const acc = new Map<string, [string, string, number, number]>();
  for (const e of events) {
    const key = `${e.device}\u0000${e.op}`;
    const row = acc.get(key) ?? [e.device, e.op, 0, 0];
    row[2]++;
    row[3] += (e.end - e.start) / 1000;
    acc.set(key, row);
  }
  return [...acc.values()].sort((a, b) => a[0].localeCompare(b[0]) || b[3] - a[3]);
}

function opColor(op: string): string {
  if (isCopyOp(op)) return '#d62728';
  if (op.startsWith('conv')) return '#1f77b4';
  if (/gemm|linear|matmul/.test(op)) return '#2ca02c';
  if (/sgd|step/.test(op)) return '#9467bd';
  return '#8c8c8c';
}

/** An SVG timeline: one lane a device, each op a box from its start to its end, copies in red. */
export function timelineSvg(events: TraceEvent[]): string {
  const devices = [...new Set(events.map((e) => e.device))].sort();
  const W = 960, L = 70, R = 10, lane = 34, T = 24;
  const H = T + devices.length * lane + 30;
  if (events.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="40"><text x="10" y="24" font-size="13">no ops were traced</text></svg>`;
  const t0 = events.reduce((m, e) => Math.min(m, e.start), Infinity);
  const t1 = events.reduce((m, e) => Math.max(m, e.end), -Infinity);
  const span = Math.max(t1 - t0, 1);
  const px = (t: number) => L + ((t - t0) / span) * (W - L - R);
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="timeline">`];
  devices.forEach((d, i) => {
    const y = T + i * lane;
    parts.push(`<text x="4" y="${y + lane / 2 + 4}" font-size="12">${escape(d)}</text>`);
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y + lane - 4}" y2="${y + lane - 4}" stroke="#ddd"/>`);
  });
  for (const e of events) {
    const y = T + devices.indexOf(e.device) * lane;
    const x = px(e.start), w = Math.max(px(e.end) - x, 0.5);
    const copy = isCopyOp(e.op);
    parts.push(`<rect class="${copy ? 'copy' : 'op'}" x="${x.toFixed(1)}" y="${copy ? y : y + 4}" width="${w.toFixed(1)}" height="${copy ? lane - 6 : lane - 12}" fill="${opColor(e.op)}"${copy ? ' stroke="#000" stroke-width="0.5"' : ''}><title>${escape(e.op)} ${((e.end - e.start) / 1000).toFixed(2)} ms</title></rect>`);
  }
  for (const t of niceTicks(0, span / 1000, 8)) {
    const x = px(t0 + t * 1000);
    parts.push(`<line x1="${x}" x2="${x}" y1="${H - 26}" y2="${H - 22}" stroke="#333"/><text x="${x}" y="${H - 10}" text-anchor="middle" font-size="11">${t} ms</text>`);
  }
  parts.push(`<text x="${W - R}" y="14" text-anchor="end" font-size="11">blue conv, green GEMM, purple SGD, red copies between devices, grey other</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}

function traceHtml(trace: NonNullable<ReportExtras['trace']>): string {
  const steps = trace.steps[1] - trace.steps[0] + 1;
  const rows = opTimes(trace.events).map(([d, op, n, ms]) => `<tr><td>${escape(d)}</td><td>${escape(op)}</td><td>${n}</td><td>${ms.toFixed(2)}</td><td>${(ms / steps).toFixed(2)}</td></tr>`).join('\n');
  const busy = new Map<string, number>();
  for (const e of trace.events) busy.set(e.device, (busy.get(e.device) ?? 0) + (e.end - e.start) / 1000);
  const copies = trace.events.filter((e) => isCopyOp(e.op)).length;
  return `<h2>Time per op (steps ${trace.steps[0]} to ${trace.steps[1]})</h2>
<p>${[...busy].map(([d, ms]) => `${escape(d)} busy ${(ms / steps).toFixed(1)} ms a step`).join('; ')}. ${copies ? `${copies} copies between devices traced.` : 'No copies between devices appear in the trace (labelled copy_out / copy_in where the device queues trace them).'}</p>
<table id="ops">
<tr><th>device</th><th>op</th><th>calls</th><th>total ms</th><th>ms a step</th></tr>
${rows}
</table>
<h2>Timeline</h2>
<div id="timeline">${timelineSvg(trace.events)}</div>`;
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
.figs { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; }
figure img { image-rendering: pixelated; }
.sample ol { margin: 4px 0; padding-left: 20px; font-size: 13px; }
.sample li.right { font-weight: bold; color: #2ca02c; }
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
${info.peakBytes ? memoryHtml(info.peakBytes) : ''}
${info.filters?.length ? filtersHtml(info.filters) : ''}
${info.samples?.length ? samplesHtml(info.samples) : ''}
${info.trace ? traceHtml(info.trace) : ''}
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
