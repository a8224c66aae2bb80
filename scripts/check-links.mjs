#!/usr/bin/env node
// Checks that every relative link in README.md and docs/*.md resolves to a file or folder inside
// the repository, and that no tracked text file points outside it (a ../ path above the root or
// an absolute path of some machine). Exits 1 with one line per problem.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const problems = [];

const pages = ['README.md', ...readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
for (const page of pages) {
  const text = readFileSync(path.join(root, page), 'utf8');
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1].split('#')[0];
    if (target === '' || /^[a-z]+:/i.test(target)) continue;  // anchors, http(s):, mailto:
    const resolved = path.resolve(root, path.dirname(page), target);
    if (!resolved.startsWith(root + path.sep)) problems.push(`${page}: link '${m[1]}' leaves the repository`);
    else if (!existsSync(resolved)) problems.push(`${page}: link '${m[1]}' points at nothing`);
  }
}

// No tracked file may name a folder outside the repository or an absolute path of a machine.
const files = execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' }).split('\n')
  .filter((f) => f && f !== 'package-lock.json' && /\.(md|ts|mts|mjs|js|cc|h|cu|py|sh|json|txt|html)$|^\.ci\//.test(f));
const outside = [/\.\.\/shared\//, /\/work\/[a-z]/, /\/home\/[a-z]+\//, /\/Users\/[A-Za-z]+\//];
for (const f of files) {
  const text = readFileSync(path.join(root, f), 'utf8');
  text.split('\n').forEach((line, i) => {
    if (outside.some((re) => re.test(line))) problems.push(`${f}:${i + 1}: refers outside the repository: ${line.trim().slice(0, 100)}`);
  });
}

if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`links: ${pages.length} pages checked, every relative link resolves inside the repository; no file refers outside it`);
