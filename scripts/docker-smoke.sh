#!/usr/bin/env bash
# `docker compose up` for real, on this machine, then the host as it was found.
#
#  1. installs Debian's docker.io, docker-compose (and debootstrap, when needed) if they are missing, with service
#     start-up disabled for the install, so no system Docker daemon starts;
#  2. starts a private dockerd that leaves the host's network alone (--bridge=none --iptables=false
#     --ip-forward=false --ip-masq=false): own socket, own exec root, data root under the cache folder;
#  3. takes the public base image (python:3.11-slim-bookworm) when it is cached or can be pulled, otherwise builds
#     one from the Debian archive (debootstrap --variant=minbase bookworm + docker import);
#  4. hands this machine's pip settings (indexes, find-links, CA bundle) to the build through a loopback HTTP server
#     (scripts/docker_pip_sources.py); the build stops with an error if it finds no CPU torch wheel;
#  5. builds docker/Dockerfile.cpu with docker/compose.hostnet.yaml (compose.yaml's CPU service on the host's
#     network, as a daemon without a bridge needs: no network is created), runs `up -d`, waits for healthy and
#     for the demo library, checks /healthz (scan_backend cpp), a search, a write refused without the API key and
#     accepted with it, then `down` and `up` again: the data is still there;
#  6. tears down: `down -v` (containers, volumes), the daemon it started and the loopback server (by process id),
#     leftover mounts; removes images that no tag needs any more (the previous build's).
#
# Kept between runs, as a cache only (no process, no network change): the Docker data root with the images and
# the layer cache, in ${VMR_DOCKER_CACHE:-~/.cache/videomamba/docker}. A warm rerun skips the base image and the
# build. Delete that folder to reclaim the space (a few GB). Runs one at a time (a lock in that folder). The logs
# of the last run (dockerd, build, compose) are kept in its last-run/ folder.
#
# Needs root and a Debian-like host with apt. Environment: VMR_DOCKER_CACHE (the cache folder), VMR_SMOKE_BASE
# (public | local | an image name: which base to use), VMR_SMOKE_TIMEOUT (seconds to wait for the service, 600).
# Exit status 0 only if every check passed; the reason of a failure is the last line that starts with "FAILED".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

started=$SECONDS
exec 8>&2  # the real stderr: a trap can fire inside a step whose output goes to a log file
say() { printf 'docker-smoke [%4ds]: %s\n' $((SECONDS - started)) "$*" >&2; }
die() { printf 'docker-smoke [%4ds]: FAILED: %s\n' $((SECONDS - started)) "$*" >&2; exit 1; }
# Long steps run as `interruptible CMD...`: bash runs a trap only once the foreground command is over, but at once
# while it waits, so SIGTERM/SIGINT reach the teardown in time (which then stops the daemon the step talks to).
interruptible() { "$@" & wait $!; }

[ "$(id -u)" = 0 ] || die "needs root: it installs and starts a Docker engine"
command -v apt-get >/dev/null || die "needs apt-get (a Debian-like host) to install the Docker engine"

PUBLIC_BASE=python:3.11-slim-bookworm
LOCAL_BASE=videomamba-local/debian:bookworm
TORCH_SPEC='torch==2.13.0+cpu'
PIP_PORT=38731  # a fixed port keeps the build arguments, and so the layer cache, the same between runs
PROJECT=vmr-smoke
cache="${VMR_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/videomamba/docker}"
wait_s="${VMR_SMOKE_TIMEOUT:-600}"
mkdir -p "$cache"
exec 9>"$cache/lock"
interruptible flock -w 3600 9 || die "another docker-smoke run holds $cache/lock"

run="$(mktemp -d /tmp/vmr-docker.XXXXXX)"
dockerd_pid="" containerd_pid="" server_pid="" policy_added="" compose_up="" prune=""
export DOCKER_HOST="unix://$run/docker.sock"

# ---------------------------------------------------------------- teardown (always)
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
stop_pid() {  # stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS
  local pid=$1 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < $2 * 10; i++)); do alive "$pid" || return 0; sleep 0.1; done
  say "process $pid did not stop on SIGTERM: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  exec 2>&8
  if [ -n "$policy_added" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ -n "$compose_up" ] && alive "$dockerd_pid"; then
    say "teardown: down -v (containers, volumes, network)"
    "${compose[@]}" down -v --remove-orphans >"$run/down.log" 2>&1 || { cat "$run/down.log" >&2; status=1; }
  fi
  if [ -n "$prune" ] && alive "$dockerd_pid"; then
    say "teardown: removing images no tag needs any more"
    docker image prune -f >/dev/null 2>&1
  fi
  if alive "$dockerd_pid"; then say "teardown: stopping dockerd (pid $dockerd_pid)"; fi
  stop_pid "$dockerd_pid" 60
  stop_pid "$containerd_pid" 20
  stop_pid "$server_pid" 10
  # anything still running from this run's private exec root (container shims after a crash)
  local pid
  for pid in $(pgrep -f -- "$run/" 2>/dev/null); do
    [ "$pid" = $$ ] || { say "teardown: stopping leftover process $pid"; stop_pid "$pid" 5; }
  done
  local target
  while read -r target; do
    case "$target" in "$run"/* | "$cache/data-root"/*) say "teardown: unmounting $target"; umount -l "$target" ;; esac
  done < <(findmnt -rn -o TARGET 2>/dev/null | sort -r)
  if [ "$status" != 0 ] && [ -s "$run/dockerd.log" ]; then
    say "dockerd log (last lines):"; tail -n 20 "$run/dockerd.log" >&2
  fi
  rm -rf "$cache/last-run" && mkdir -p "$cache/last-run" && cp "$run"/*.log "$cache/last-run/" 2>/dev/null
  rm -rf --one-file-system "$run"
  say "done in $((SECONDS - started)) s, exit status $status"
  exit "$status"
}
trap cleanup EXIT
trap 'exec 2>&8; say "FAILED: interrupted (SIGINT)"; exit 130' INT
trap 'exec 2>&8; say "FAILED: interrupted (SIGTERM)"; exit 143' TERM

# ---------------------------------------------------------------- 1. packages
apt_install() {
  # No service may start during the install (a system dockerd would rewrite the firewall): policy-rc.d says so.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_added=1
  fi
  say "installing $* (apt)"
  { interruptible apt-get update -qq \
      && interruptible env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
    >"$run/apt.log" 2>&1 || { tail -n 20 "$run/apt.log" >&2; die "apt-get install $* failed"; }
  if [ -n "$policy_added" ]; then rm -f /usr/sbin/policy-rc.d; policy_added=""; fi
}
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
[ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
command -v docker >/dev/null || die "no docker client after installing docker.io"
compose=(docker-compose -p "$PROJECT" -f docker/compose.hostnet.yaml)
SERVICE=retrieval

# Python with pip, to read this machine's pip settings and to talk to the service
py=""
for candidate in "$root/.venv/bin/python" python3; do
  if "$candidate" -m pip --version >/dev/null 2>&1; then py="$candidate"; break; fi
done
[ -n "$py" ] || die "no Python with pip here (run scripts/setup.sh first)"

# ---------------------------------------------------------------- 2. the daemon
mkdir -p "$cache/data-root" "$run/exec"
echo '{}' >"$run/daemon.json"  # not /etc/docker/daemon.json: this daemon's settings are all on its command line
say "starting dockerd (data root $cache/data-root)"
dockerd --config-file "$run/daemon.json" --data-root "$cache/data-root" --exec-root "$run/exec" \
  --pidfile "$run/dockerd.pid" --host "$DOCKER_HOST" \
  --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
  >"$run/dockerd.log" 2>&1 8>&- 9>&- &
dockerd_pid=$!
for ((i = 0; i < 600; i++)); do
  alive "$dockerd_pid" || die "dockerd exited at start (its log is below): no Docker engine runs on this machine"
  docker version >/dev/null 2>&1 && break
  sleep 0.1
done
docker version >/dev/null 2>&1 || die "dockerd did not answer on $DOCKER_HOST within 60 s"
containerd_pid="$(cat "$run/exec/containerd/containerd.pid" 2>/dev/null || true)"
say "dockerd $(docker version -f '{{.Server.Version}}') is up (pid $dockerd_pid), storage driver $(docker info -f '{{.Driver}}')"

# Left over from a run that was killed: this daemon and its data root are ours alone.
stale="$(docker ps -aq)"
if [ -n "$stale" ]; then say "removing containers left by an earlier run"; docker rm -f $stale >/dev/null; fi
docker volume prune -f >/dev/null

# ---------------------------------------------------------------- 3. the base image
debian_mirror() {
  local m
  m="$(apt-get indextargets --format '$(REPO_URI) $(CODENAME)' 2>/dev/null | awk '$2 == "bookworm" {print $1; exit}')"
  echo "${m:-http://deb.debian.org/debian/}"
}
build_local_base() {
  command -v debootstrap >/dev/null || apt_install debootstrap
  local dir="$run/rootfs" mirror
  mirror="$(debian_mirror)"
  say "building the base image $LOCAL_BASE from the Debian archive ($mirror)"
  interruptible debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$run/debootstrap.log" 2>&1 \
    || { tail -n 20 "$run/debootstrap.log" >&2; die "debootstrap failed"; }
  tar --numeric-owner -C "$dir" -c . | docker import -c 'CMD ["/bin/bash"]' - "$LOCAL_BASE" >/dev/null
  rm -rf --one-file-system "$dir"
}
case "${VMR_SMOKE_BASE:-}" in
  public) base=$PUBLIC_BASE; docker image inspect "$base" >/dev/null 2>&1 || interruptible docker pull -q "$base" >/dev/null \
            || die "cannot pull $base" ;;
  local) base=$LOCAL_BASE; docker image inspect "$base" >/dev/null 2>&1 || build_local_base ;;
  "")
    if docker image inspect "$PUBLIC_BASE" >/dev/null 2>&1; then base=$PUBLIC_BASE
    elif docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then base=$LOCAL_BASE
    elif interruptible timeout 120 docker pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then base=$PUBLIC_BASE
    else say "cannot pull $PUBLIC_BASE (no registry reachable)"; build_local_base; base=$LOCAL_BASE
    fi ;;
  *) base=$VMR_SMOKE_BASE ;;
esac
say "base image: $base"

# ---------------------------------------------------------------- 4. pip settings for the build
start_pip_server() {
  rm -f "$run/build-args"
  "$py" scripts/docker_pip_sources.py --args-file "$run/build-args" --port "$1" --torch "$TORCH_SPEC" \
    >"$run/pip-sources.log" 2>&1 8>&- 9>&- &
  server_pid=$!
  for ((i = 0; i < 1200; i++)); do
    [ -e "$run/build-args" ] && return 0  # written at once, when complete
    alive "$server_pid" || return 1
    sleep 0.1
  done
  return 1
}
if ! start_pip_server "$PIP_PORT"; then
  say "port $PIP_PORT is taken: serving pip's local sources on another port (the layer cache will not match)"
  stop_pid "$server_pid" 5
  start_pip_server 0 || { cat "$run/pip-sources.log" >&2; die "could not serve this machine's pip sources"; }
fi
sed 's/^/    /' "$run/pip-sources.log" >&2
build_args=(--build-arg "BASE_IMAGE=$base")
while IFS= read -r line; do build_args+=(--build-arg "$line"); done <"$run/build-args"
grep -q '^TORCH_INDEX_URL=' "$run/build-args" \
  || say "this machine's pip has no $TORCH_SPEC: the build tries https://download.pytorch.org/whl/cpu"

# ---------------------------------------------------------------- 5. build, up, checks, down, up, checks
export VMR_API_KEY="smoke-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export VMR_PORT="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$VMR_PORT"

t0=$SECONDS
say "building the CPU image (docker-compose build; log in the output on failure)"
if ! interruptible "${compose[@]}" build "${build_args[@]}" "$SERVICE" >"$run/build.log" 2>&1; then
  tail -n 40 "$run/build.log" >&2
  grep -q "ERROR: no CPU torch wheel" "$run/build.log" && die "the build found no CPU torch wheel ($TORCH_SPEC)"
  die "docker-compose build failed"
fi
build_s=$((SECONDS - t0))
# The classic builder leaves the build stage's images untagged: tag its last one so that it stays the next run's
# layer cache, and the teardown can remove what no tag needs any more (an earlier build's layers, gigabytes).
builder_id="$(awk '/^Step [0-9]+\/[0-9]+ : FROM /{ at_from = last } /^ ---> [0-9a-f]+$/{ last = $2 } END { print at_from }' \
  "$run/build.log")"
if [ -n "$builder_id" ] && docker tag "$builder_id" videomamba-retrieval:cpu-build-stage 2>/dev/null; then
  prune=1
else
  say "could not find the build stage's image in the build log: earlier images are kept"
fi
grep -E "selective-scan kernel built|scan backend:" "$run/build.log" | sed 's/^/    /' >&2 || true
size="$(docker image inspect -f '{{.Size}}' videomamba-retrieval:cpu | awk '{printf "%.2f GB", $1 / 1e9}')"
say "image built in $build_s s: videomamba-retrieval:cpu, $size"

container_health() {
  local id
  id="$("${compose[@]}" ps -q "$SERVICE")"
  [ -n "$id" ] && docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id"
}
up_and_wait() {
  local t0=$SECONDS state=""
  compose_up=1
  interruptible "${compose[@]}" up -d --no-build "$SERVICE" >"$run/up.log" 2>&1 \
    || { cat "$run/up.log" >&2; die "docker-compose up failed"; }
  while ((SECONDS - t0 < wait_s)); do
    state="$(container_health || true)"
    case "$state" in
      "running healthy") say "healthy after $((SECONDS - t0)) s"; return 0 ;;
      exited* | dead* | "running unhealthy")
        "${compose[@]}" logs --tail 40 "$SERVICE" >&2; die "the container is $state" ;;
    esac
    sleep 1
  done
  "${compose[@]}" logs --tail 40 "$SERVICE" >&2
  die "not healthy after $wait_s s (state: $state)"
}
check() {  # check PHASE: the HTTP checks, in Python (stdlib only)
  "$py" - "$url" "$VMR_API_KEY" "$1" "$run/state.json" "$wait_s" <<'PY'
import json, sys, time, urllib.error, urllib.request
url, key, phase, state_file, wait_s = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])

def call(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

def fail(message):
    print(f"docker-smoke: FAILED: {message}", file=sys.stderr)
    sys.exit(1)

t0 = time.monotonic()
while True:
    status, health = call("GET", "/healthz")
    if status == 200 and health.get("default_library") == "ready":
        break
    if status == 200 and str(health.get("default_library")).startswith("failed"):
        fail(f"the demo library did not build: {health}")
    if time.monotonic() - t0 > wait_s:
        fail(f"the demo library is not ready after {wait_s:.0f} s: {status} {health}")
    time.sleep(1)
print(f"docker-smoke: /healthz ({phase}): {json.dumps(health)}", file=sys.stderr)
if health.get("scan_backend") != "cpp":
    fail(f"the encoder does not run the compiled kernel in the container: scan_backend={health.get('scan_backend')}")

query = {"query": "a large blue circle goes to the left", "k": 3}
status, found = call("POST", "/search", query)
if status != 200 or not found.get("results"):
    fail(f"search on the demo library: {status} {found}")
top = [r["video_id"] for r in found["results"]]
hits = [(r["title"], round(r["score"], 3)) for r in found["results"]]
print(f"docker-smoke: search ({phase}): {hits}", file=sys.stderr)

if phase == "first":
    text = {"texts": ["a smoke test caption written through the API"]}
    status, body = call("POST", "/texts", text)
    if status != 401:
        fail(f"a write without the API key answered {status} {body}, not 401")
    status, body = call("POST", "/texts", text, {"X-API-Key": key + "x"})
    if status != 403:
        fail(f"a write with a wrong API key answered {status} {body}, not 403")
    status, body = call("POST", "/texts", text, {"X-API-Key": key})
    if status != 200 or len(body.get("ids", [])) != 1:
        fail(f"a write with the API key answered {status} {body}")
    status, after = call("GET", "/healthz")
    if after["texts"] != health["texts"] + 1:
        fail(f"texts {health['texts']} -> {after['texts']} after adding one")
    print(f"docker-smoke: writes: 401 without the key, 403 with a wrong one, 200 with it (text id {body['ids'][0]})",
          file=sys.stderr)
    json.dump({"videos": after["videos"], "texts": after["texts"], "top": top}, open(state_file, "w"))
else:
    before = json.load(open(state_file))
    kept = {"videos": health["videos"], "texts": health["texts"], "top": top}
    if kept != before:
        fail(f"data not kept across down/up: before {before}, after {kept}")
    print(f"docker-smoke: kept across down/up: {kept}", file=sys.stderr)
PY
}

up_and_wait
interruptible check first || die "checks after the first up"
if "${compose[@]}" logs "$SERVICE" 2>&1 | grep -i "kernel is unavailable"; then
  die "the service logged that the compiled kernel is unavailable"
fi
say "down (volumes kept), then up again"
interruptible "${compose[@]}" down >"$run/down.log" 2>&1 || { cat "$run/down.log" >&2; die "docker-compose down failed"; }
up_and_wait
interruptible check again || die "checks after down/up"
say "all checks passed (build $build_s s)"
