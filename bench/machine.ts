/**
 * What a device can do at best, for the "fraction of peak" columns and the roofline: peak
 * FLOP/s by precision and memory bandwidth. GPUs come from a small table of data-sheet numbers
 * (dense, no sparsity), matched by the name the driver reports; CPUs are estimated from the
 * thread count and the listed clock as threads x GHz x FLOP per cycle (two FMA units per core:
 * 64 with AVX-512, 32 with AVX2), and say so.
 */
import { readFileSync } from 'node:fs';

export type Precision = 'fp32' | 'tf32' | 'bf16';
export const PRECISIONS: Precision[] = ['fp32', 'tf32', 'bf16'];

export interface Peak {
  /** TFLOP/s by math precision. */
  tflops: Record<Precision, number>;
  /** Data-sheet memory bandwidth in GB/s (the measured copy bandwidth is reported beside it). */
  bandwidthGBs: number;
  /** Where the numbers come from. */
  source: string;
}

// Dense peaks from NVIDIA's data sheets: [name pattern, fp32, tf32, bf16 TFLOP/s, GB/s].
const GPUS: [RegExp, number, number, number, number][] = [
  [/H200/i, 67, 494.7, 989.4, 4800],
  [/H100.*(PCIe)/i, 51.2, 378, 756, 2000],
  [/H100.*NVL/i, 60, 417.5, 835, 3900],
  [/H100/i, 67, 494.7, 989.4, 3350],
  [/A100/i, 19.5, 156, 312, 2039],
  [/L40S/i, 91.6, 183, 362, 864],
  [/RTX 4090/i, 82.6, 82.6, 165.2, 1008],
];

/** The clock (the highest `cpu MHz` listed) and the float32 FLOP per cycle of one core. */
function cpuFacts(): { ghz: number; perCycle: number; isa: string } | null {
  try {
    const lines = readFileSync('/proc/cpuinfo', 'utf8').split('\n');
    const mhz = lines.filter((l) => l.startsWith('cpu MHz')).map((l) => Number(l.split(':')[1])).filter((v) => Number.isFinite(v) && v > 0);
    if (!mhz.length) return null;
    const flags = new Set((lines.find((l) => l.startsWith('flags')) ?? '').split(':')[1]?.trim().split(/\s+/) ?? []);
    // Two FMA units per core: 2 x lanes x 2 FLOP per cycle.
    const [perCycle, isa] = flags.has('avx512f') ? [64, 'AVX-512 FMA'] : flags.has('fma') ? [32, 'AVX2 FMA'] : [16, 'SSE'];
    return { ghz: Math.max(...mhz) / 1000, perCycle, isa };
  } catch {
    return null;
  }
}

export function peakOf(kind: 'cpu' | 'cuda', name: string, threads: number): Peak | null {
  if (kind === 'cuda') {
    const hit = GPUS.find(([re]) => re.test(name));
    if (!hit) return null;
    const [, fp32, tf32, bf16, bw] = hit;
    return { tflops: { fp32, tf32, bf16 }, bandwidthGBs: bw, source: `data sheet of ${name} (dense)` };
  }
  const cpu = cpuFacts();
  if (!cpu) return null;
  const fp32 = (threads * cpu.ghz * cpu.perCycle) / 1000;
  // No TF32 on a CPU; bf16 at best doubles fp32 (AVX-512 BF16), taken as equal here.
  return {
    tflops: { fp32, tf32: fp32, bf16: fp32 },
    bandwidthGBs: NaN,
    source: `estimate: ${threads} threads x ${cpu.ghz.toFixed(2)} GHz x ${cpu.perCycle} FLOP/cycle (${cpu.isa}; turbo clocks can exceed it)`,
  };
}
