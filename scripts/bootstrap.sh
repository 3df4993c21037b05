# Sourced by the other scripts: makes ./.venv with everything recengine needs, once.
# torch is pinned to 2.13.0 and installed before the project; RECENGINE_TORCH_INDEX (e.g. PyTorch's
# https://download.pytorch.org/whl/cpu) adds an index whose CPU build pip then prefers to PyPI's CUDA one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RECENGINE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.recengine-installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/bootstrap.sh" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing recengine and its dependencies into $VENV ..." >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q ${RECENGINE_TORCH_INDEX:+--extra-index-url "$RECENGINE_TORCH_INDEX"} \
    "torch==2.13.0" >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]" >&2
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
