#!/bin/sh
# Rebuild the shipped t1_mapping bundle and its comparison (sequences/bundles/README.md):
#  1. train the recipe (TI/Trec learned jointly with the MLP head, sparse synthetic samples only);
#  2. train the textbook baseline: the same recipe with the sequence frozen at its start (the
#     textbook IR spread), the head trained alone for the same iterations;
#  3. score both and the best constant T1 map on all 8 brain slices (tools/t1_bundle_eval.py)
#     and record the held-out figures in the learned checkpoint's provenance;
#  4. export it as the bundle (the old bundle directory is removed first).
# Usage: tools/rebuild_t1_mapping.sh [OUT]   (default OUT: build/train; ~1 h on a busy 2-core CPU)
set -eu
OUT=${1:-build/train}
BIN=${BIN:-.venv/bin}
RECIPE=sequences/bundles/recipes/t1_mapping.yaml
mkdir -p "$OUT"
"$BIN/mrzero" train "$RECIPE" --threads 1 --no-progress -o "$OUT/t1_mapping"
"$BIN/python" - "$RECIPE" "$OUT/t1_mapping_textbook_ir.yaml" <<'PY'
import sys

import yaml

recipe = yaml.safe_load(open(sys.argv[1]))
recipe["name"] = "t1_mapping_textbook_ir"
recipe["sequence"]["learn"] = {}
open(sys.argv[2], "w").write(yaml.safe_dump(recipe, sort_keys=False))
PY
"$BIN/mrzero" train "$OUT/t1_mapping_textbook_ir.yaml" --threads 1 --no-progress -o "$OUT/t1_mapping_textbook_ir"
"$BIN/python" tools/t1_bundle_eval.py "$RECIPE" \
    "learned=$OUT/t1_mapping/final.pt" "textbook=$OUT/t1_mapping_textbook_ir/final.pt" \
    --json "$OUT/t1_mapping_eval.json" --record learned "$OUT/t1_mapping/final_held_out.pt"
rm -rf sequences/bundles/t1_mapping
"$BIN/mrzero" export "$OUT/t1_mapping/final_held_out.pt" -o sequences/bundles/t1_mapping \
    --name t1_mapping --pipeline mrzero_head --head-output T1:s
