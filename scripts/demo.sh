#!/usr/bin/env bash
# The main job on the default data set (MovieLens-100K): get the data, evaluate the models on the
# standard protocols, print the tables, then recommendations for a user.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
SHARED="$(cd .. && pwd)/shared/data"
if ! recengine data info ml-100k --json >/dev/null 2>&1; then
  if [ -x "$SHARED/get-ml-100k" ]; then
    # Offline machines: build the GroupLens files locally (md5-checked), then import them.
    tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    python "$SHARED/get-ml-100k" "$tmp/ml-100k" >&2
    recengine data fetch ml-100k --from "$tmp/ml-100k"
  else
    recengine data fetch ml-100k
  fi
fi
recengine data info ml-100k
recengine compare --models global-mean,user-mean,bias,popularity,mf \
  --protocols ml100k-u,ml100k-ua,ml100k-ua-binary,topn-ml100k
recengine recommend --data ml-100k --model mf --user 1 -k 10
