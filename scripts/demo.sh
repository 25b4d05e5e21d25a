#!/usr/bin/env bash
# The embedded default: set up .venv, then serve a small synthetic video library indexed with the demo model on
# http://127.0.0.1:8000 (built on first start into data/service, reused afterwards). Extra arguments go to
# `python -m service` (see --help). Stop with Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
port="${VMR_PORT:-8000}"
cat <<MSG
Serving on http://127.0.0.1:$port (API docs at /docs). The library is ready when /healthz says "ready":
  curl -s http://127.0.0.1:$port/healthz
  curl -s -X POST http://127.0.0.1:$port/search -H 'content-type: application/json' \\
       -d '{"query": "a red circle moves to the left", "k": 3}'
MSG
exec .venv/bin/python -m service "$@"
