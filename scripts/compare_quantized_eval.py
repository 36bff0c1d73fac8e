#!/usr/bin/env python3
"""Per-item comparison of a quantised-path eval (`pudding --weights quantized eval ... --out Q.json`)
with the f32 path's committed results on the same items:

    python3 scripts/compare_quantized_eval.py results/smollm2/quantized/dense-arc_easy-piqa-500.json
"""
import json, sys
q = json.load(open(sys.argv[1]))
f = json.load(open(sys.argv[2] if len(sys.argv) > 2 else 'results/smollm2/eval/full/dense.json'))
for task, tq in q['tasks'].items():
    tf = f['tasks'][task]
    n = len(tq['items'])
    fi = {i['doc_id']: i for i in tf['items']}
    metric = tq['metric']
    agree = 0; accq = accf = 0; accnq = accnf = 0
    for it in tq['items']:
        g = fi[it['doc_id']]
        assert g['gold'] == it['gold']
        accq += it['pred'] == it['gold']; accf += g['pred'] == g['gold']
        accnq += it['pred_norm'] == it['gold']; accnf += g['pred_norm'] == g['gold']
        agree += (it['pred_norm'] if metric == 'acc_norm' else it['pred']) == (g['pred_norm'] if metric == 'acc_norm' else g['pred'])
    print(f"{task} ({tq['split']}, first {n} items, metric {metric}): acc f32 {100*accf/n:.1f} quantised {100*accq/n:.1f}; acc_norm f32 {100*accnf/n:.1f} quantised {100*accnq/n:.1f}; same prediction on {agree}/{n}")
