#!/usr/bin/env bash
# Record the outputs of a fixed set of dsi-online commands into folder $1, so that a
# refactoring can be checked byte for byte: diff -r before/ after/.
# Wall-clock and timing outputs are reduced to their JSON keys (their numbers are timings),
# and the elapsed time of heatmap and sweep is masked. Run from the repository root:
#   bash scripts/same_outputs.sh /tmp/before   (old code)   bash scripts/same_outputs.sh /tmp/after
#   diff -r /tmp/before /tmp/after
set -uo pipefail
out=$1; mkdir -p "$out"; tmp=/tmp/dsi-online-same-outputs; rm -rf "$tmp"; mkdir -p "$tmp"
export COLUMNS=80
d() { python -m dsi_online "$@"; }
keys() { python -c 'import json,sys
def k(x,p=""):
    if isinstance(x,dict):
        for a,b in sorted(x.items()): print(p+"/"+a); k(b,p+"/"+a)
    elif isinstance(x,list) and x: k(x[0],p+"[]")
k(json.load(open(sys.argv[1])))' "$1"; }
d run --clock virtual -S 200 -r 5 --seed 3 > "$out/run-virtual.txt" 2>&1; echo "rc=$?" >> "$out/run-virtual.txt"
d run --clock virtual -S 200 -r 5 --seed 3 --latency-cv 0.5 --json - > "$out/run-virtual.json" 2>&1
d run --clock virtual --profile tiny-llama-cpu -a 0.7 -S 100 -r 4 --json - > "$out/run-profile.json" 2>&1
d run --clock wall --target-ms 2 --drafter-ms 0.5 -S 30 -r 2 --json "$tmp/w.json" > /dev/null 2>&1; keys "$tmp/w.json" > "$out/run-wall.keys"
d heatmap --help > "$out/heatmap-help.txt" 2>&1
d heatmap --out "$tmp/hm" --ndim 4 --max-lookahead 4 --servers 3 --tokens 100 --repeats 2 --no-png --workers 1 > "$out/heatmap.txt" 2>&1
d heatmap --out "$tmp/hma" --engine async --ndim 2 --max-lookahead 3 --tokens 50 --repeats 2 --no-png --workers 1 > "$out/heatmap-async.txt" 2>&1
d sweep --vary servers=1:4 --clock virtual -S 100 -r 3 --out "$tmp/sw" --no-png --workers 1 > "$out/sweep.txt" 2>&1
d sweep --vary servers=1,3 --vary lookahead=2,5 --clock virtual -S 100 -r 3 --out "$tmp/sw2" --no-png --workers 1 --json - > "$out/sweep2.json" 2>&1
d table --help > "$out/table-help.txt" 2>&1
d table tiny-llama-cpu -a 0.7 > "$out/table.txt" 2>&1
d table tiny-llama-cpu -a 0.7 --json - > "$out/table.json" 2>&1
d bench --quick --json "$tmp/b.json" > /dev/null 2>&1; keys "$tmp/b.json" > "$out/bench.keys"
d profiles > "$out/profiles.txt" 2>&1
d profiles show tiny-llama-cpu > "$out/profiles-show.txt" 2>&1
d --help > "$out/help.txt" 2>&1
for c in run heatmap sweep table bench measure validate pair profiles; do d $c --help > "$out/help-$c.txt" 2>&1; done
d run -k 0 > "$out/err-k0.txt" 2>&1; echo "rc=$?" >> "$out/err-k0.txt"
for r in hm hma sw sw2; do ( cd "$tmp/$r" 2>/dev/null && for f in $(find . -type f \( -name '*.json' -o -name '*.csv' -o -name '*.jsonl' \) | sort); do echo "== $f"; cat "$f"; done ) > "$out/files-$r.txt" 2>&1; done
# timings are the only numbers that may differ: mask them
sed -i -E 's/in [0-9.]+ s \([0-9.]+ cells\/s/in T s (R cells\/s/' "$out"/*.txt "$out"/*.json
rm -rf "$tmp"
