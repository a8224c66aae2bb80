/**
 * The HTML page of a `bench conv` run: one self-contained file (inline SVG and CSS, no script,
 * nothing fetched) with
 *   - bars: for every layer and pass, one bar per driver, its median time (the longest bar of
 *     each group spans the width; the number is printed beside it);
 *   - a roofline: achieved TFLOP/s against arithmetic intensity (FLOP per byte of the least
 *     traffic), log-log, with the device's peak lines (FLOP/s by math, and the measured copy
 *     bandwidth as the slope), one point per kernel (layer x pass x driver) that does arithmetic.
 * Every point and bar carries data-driver / data-trial attributes, so tests can count them.
 */
import type { KernelRow, PairSummary } from './conv.js';
import { intensity, PASS_LABEL, type BenchLayer } from './layers.js';
import type { Peak } from './machine.js';

const COLORS: Record<string, string> = { convnet: '#1f77b4', 'convnet-v2': '#17becf', 'convnet-v3': '#9467bd', cudnn: '#76b900', pytorch: '#ee4c2c' };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function num(v: number, digits = 3): string {
  return Number.isFinite(v) ? v.toPrecision(digits) : '-';
}

function bars(rows: KernelRow[], layers: BenchLayer[], drivers: string[]): string {
  const barH = 12;
  const label = 270;
  const width = 900;
  const plot = width - label - 90;
  const parts: string[] = [];
  let y = 10;
  for (const l of layers) {
    for (const pass of l.passes) {
      const trial = `${l.name} ${PASS_LABEL[pass]}`;
      const group = drivers.map((d) => rows.find((r) => r.trial === trial && r.driver === d)).filter((r): r is KernelRow => !!r);
      if (group.length === 0) continue;
      const max = Math.max(...group.map((r) => r.ms.median));
      parts.push(`<text x="0" y="${y + barH - 2}" class="lbl">${esc(trial)} <tspan class="dim">${esc(l.what)}</tspan></text>`);
      for (const r of group) {
        const w = max > 0 ? Math.max(1, (plot * r.ms.median) / max) : 1;
        const wrong = r.correct ? '' : ' (wrong)';
        parts.push(`<rect class="bar" data-driver="${r.driver}" data-trial="${esc(trial)}" x="${label}" y="${y}" width="${w.toFixed(1)}" height="${barH - 2}" fill="${COLORS[r.driver] ?? '#888'}"${r.correct ? '' : ' fill-opacity="0.35"'}><title>${esc(`${r.driver}: ${r.version}: ${num(r.ms.median)} ms${wrong}`)}</title></rect>`);
        parts.push(`<text x="${label + w + 4}" y="${y + barH - 3}" class="val">${num(r.ms.median)} ms${wrong}</text>`);
        y += barH;
      }
      y += 6;
    }
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 10}" role="img" aria-label="median time per layer and pass">${parts.join('')}</svg>`;
}

function roofline(rows: KernelRow[], layers: BenchLayer[], peak: Peak | null, copyGBs: number | null): string {
  const pts = rows.filter((r) => r.tflops !== null && r.tflops > 0);
  const W = 760;
  const H = 480;
  const m = { l: 70, r: 150, t: 20, b: 50 };
  const ais = pts.map((r) => intensity(layers.find((l) => l.name === r.layer)!, r.pass));
  const ys = pts.map((r) => r.tflops!);
  const peaks = peak ? [...new Set([peak.tflops.fp32, peak.tflops.tf32])] : [];
  const xmin = 10 ** Math.floor(Math.log10(Math.min(1, ...ais)));
  const xmax = 10 ** Math.ceil(Math.log10(Math.max(100, ...ais)));
  const ymax = 10 ** Math.ceil(Math.log10(Math.max(...ys, ...peaks, 1e-3) * 1.5));
  const ymin = 10 ** Math.floor(Math.log10(Math.min(...ys, ymax / 1e4)));
  const X = (v: number) => m.l + ((Math.log10(v) - Math.log10(xmin)) / (Math.log10(xmax) - Math.log10(xmin))) * (W - m.l - m.r);
  const Y = (v: number) => H - m.b - ((Math.log10(v) - Math.log10(ymin)) / (Math.log10(ymax) - Math.log10(ymin))) * (H - m.t - m.b);
  const parts: string[] = [];
  for (let e = Math.log10(xmin); e <= Math.log10(xmax); e++) {
    parts.push(`<line x1="${X(10 ** e)}" y1="${m.t}" x2="${X(10 ** e)}" y2="${H - m.b}" class="grid"/><text x="${X(10 ** e)}" y="${H - m.b + 16}" class="tick" text-anchor="middle">${10 ** e}</text>`);
  }
  for (let e = Math.log10(ymin); e <= Math.log10(ymax); e++) {
    parts.push(`<line x1="${m.l}" y1="${Y(10 ** e)}" x2="${W - m.r}" y2="${Y(10 ** e)}" class="grid"/><text x="${m.l - 6}" y="${Y(10 ** e) + 4}" class="tick" text-anchor="end">${num(10 ** e, 2)}</text>`);
  }
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 10}" text-anchor="middle" class="axis">arithmetic intensity (FLOP per byte)</text>`);
  parts.push(`<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle" class="axis">achieved TFLOP/s</text>`);
  // The roof: min(peak, intensity x bandwidth) for each peak, bandwidth measured.
  if (peak && copyGBs) {
    for (const [name, p] of [['fp32', peak.tflops.fp32], ['tf32', peak.tflops.tf32]] as const) {
      if (name === 'tf32' && p === peak.tflops.fp32) continue;
      const knee = (p * 1e12) / (copyGBs * 1e9);
      const x0 = xmin;
      const y0 = (x0 * copyGBs * 1e9) / 1e12;
      parts.push(`<polyline class="roof" data-peak="${name}" fill="none" stroke="#444" stroke-dasharray="${name === 'tf32' ? '6 3' : ''}" points="${X(x0)},${Y(Math.max(y0, ymin))} ${X(Math.min(knee, xmax))},${Y(Math.min(p, ymax))} ${X(xmax)},${Y(Math.min(p, ymax))}"/>`);
      parts.push(`<text x="${W - m.r + 4}" y="${Y(p) + 4}" class="tick">${name} peak ${num(p)} TFLOP/s</text>`);
    }
    parts.push(`<text x="${X(xmin) + 4}" y="${Y(Math.max((xmin * copyGBs * 1e9) / 1e12, ymin)) - 6}" class="tick">copy ${num(copyGBs)} GB/s (measured)</text>`);
  }
  pts.forEach((r, k) => {
    parts.push(`<circle class="point" data-driver="${r.driver}" data-trial="${esc(r.trial)}" cx="${X(ais[k]).toFixed(1)}" cy="${Y(r.tflops!).toFixed(1)}" r="4" fill="${COLORS[r.driver] ?? '#888'}"${r.correct ? '' : ' fill-opacity="0.3"'}><title>${esc(`${r.driver} ${r.trial}: ${num(r.tflops!)} TFLOP/s at ${num(ais[k])} FLOP/B`)}</title></circle>`);
  });
  // The legend sits in the lower right, clear of the peak labels at the top.
  const legend = Object.entries(COLORS).map(([d, c], i) =>
    `<circle cx="${W - m.r + 10}" cy="${H - m.b - 56 + 16 * i}" r="4" fill="${c}"/><text x="${W - m.r + 18}" y="${H - m.b - 52 + 16 * i}" class="tick">${d}</text>`).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="roofline">${parts.join('')}${legend}</svg>`;
}

export interface HtmlInput {
  title: string;
  rows: KernelRow[];
  layers: BenchLayer[];
  summaries: PairSummary[];
  peak: Peak | null;
  copyGBs: number | null;
  notes: Record<string, string | number>;
}

export function renderHtml(h: HtmlInput): string {
  const drivers = ['convnet', 'convnet-v2', 'convnet-v3', 'cudnn', 'pytorch'].filter((d) => h.rows.some((r) => r.driver === d));
  const facts = Object.entries(h.notes).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(String(v))}</td></tr>`).join('');
  const summary = h.summaries.map((s) =>
    `<li>convnet vs ${esc(s.peer)}: geometric-mean speed-up ${s.geomeanSpeedup === null ? '-' : `${num(s.geomeanSpeedup)}x`} over ${s.correct} correct of ${s.rows} rows; fast_1 ${num(s.fast1, 2)}, fast_2 ${num(s.fast2, 2)}</li>`).join('');
  const versions = [...new Set(h.rows.map((r) => `${r.driver}: ${r.version}`))].slice(0, 40).map((v) => `<li>${esc(v)}</li>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(h.title)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; } th, td { text-align: left; padding: 2px 10px 2px 0; vertical-align: top; }
.lbl { font-size: 11px; } .dim { fill: #888; } .val, .tick { font-size: 10px; fill: #333; } .axis { font-size: 12px; }
.grid { stroke: #e4e4e4; } h2 { margin-top: 28px; }
</style></head><body>
<h1>${esc(h.title)}</h1>
<table>${facts}</table>
<h2>Summary</h2><ul>${summary || '<li>no driver pair to compare</li>'}</ul>
<h2>Median time per layer and pass</h2>
<p>${drivers.map((d) => `<span style="color:${COLORS[d]}">&#9632;</span> ${esc(d)}`).join(' &nbsp; ')}; faded: the result did not match ours.</p>
${bars(h.rows, h.layers, drivers)}
<h2>Roofline</h2>
<p>One point per kernel that does arithmetic (convolutions and linear layers); the memory-bound layers are in the bars and the JSON (GB/s).</p>
${roofline(h.rows, h.layers, h.peak, h.copyGBs)}
<h2>Kernels</h2><ul>${versions}</ul>
</body></html>
`;
}
