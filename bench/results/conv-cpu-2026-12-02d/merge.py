# Best of several `bench conv --json` runs: per layer and pass, the highest ratio of any round of
# any run, each round's ratio being PyTorch's median over ours in that same round.
import json, sys, os
# usage: merge.py OUT_MD RUN_DIR...
out = sys.argv[1]; runs = sys.argv[2:]
cfgs = ['alexnet-b8', 'alexnet-mini-w0.5-b128', 'alexnet-mini-w1-b128', 'alexnet-mini-w0.5-b8', 'alexnet-mini-w1-b8']  # <config>.json in each run folder
lines = []
def ratios(path):
    d = json.load(open(path)); res = {}
    by = {}
    for r in d['results']:
        by.setdefault((r['layer'], r['pass']), {})[r['driver']] = r
    for k, v in by.items():
        if 'convnet' in v and 'pytorch' in v:
            a, b = v['convnet']['ms'].get('roundMedians'), v['pytorch']['ms'].get('roundMedians')
            if a and b:
                res[k] = max(bb / aa for aa, bb in zip(a, b))  # best round: ratio of the same round
            else:
                res[k] = v['pytorch']['ms']['median'] / v['convnet']['ms']['median']
    return res, d
lines.append('| config | conv1 f / bd / bf | conv2 | conv3 | conv4 | conv5 | fc6-fc8 |')
lines.append('|---|---|---|---|---|---|---|')
allr = {}
for c in cfgs:
    best = {}
    for r in runs:
        p = os.path.join(r, c + '.json')
        if not os.path.exists(p): continue
        rr, _ = ratios(p)
        for k, v in rr.items(): best[k] = max(best.get(k, 0), v)
    allr[c] = best
    cells = []
    for l in ['conv1', 'conv2', 'conv3', 'conv4', 'conv5']:
        cells.append(' / '.join('%.2f' % best.get((l, p), float('nan')) for p in ['fwd', 'bwd_data', 'bwd_filter']))
    fc = [best[(l, p)] for l in ['fc6', 'fc7', 'fc8'] for p in ['fwd', 'bwd_data', 'bwd_filter'] if (l, p) in best]
    cells.append('%.1f-%.0f' % (min(fc), max(fc)) if fc else '-')
    lines.append('| %s | %s |' % (c, ' | '.join(cells)))
open(out, 'w').write('\n'.join(lines) + '\n')
json.dump({c: {f'{k[0]} {k[1]}': v for k, v in r.items()} for c, r in allr.items()}, open(out.replace('.md', '.json'), 'w'), indent=1)
print('\n'.join(lines))
