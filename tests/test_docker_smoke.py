"""`docker compose up` for real: scripts/docker-smoke.sh builds the CPU image, runs it with docker-compose and checks
the service (health with the compiled scan kernel, search, API key, data kept across down/up). Then the host must be
as it was: no Docker process, container, mount, network interface, route or firewall rule left behind.

A few minutes cold (engine install, base image, image build), well under a minute with the cache warm. It needs
root and apt (CI runs as root on Debian); on a machine where no Docker engine can run it fails, it never skips.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "docker-smoke.sh"
TIMEOUT_S = 2700  # a cold run under heavy load took 16.5 min here
DOCKER_PROCESSES = re.compile(r"^(dockerd|containerd|containerd-shim.*|docker-proxy|runc|docker-init)$")


def cache_dir() -> Path:
    """Where the script keeps Docker's data root (the same rule as the script's)."""
    if os.environ.get("VMR_DOCKER_CACHE"):
        return Path(os.environ["VMR_DOCKER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "videomamba" / "docker"


def _run(*cmd: str) -> str:
    if not shutil.which(cmd[0]):
        return ""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout


def firewall_rules() -> list[str]:
    """iptables rules and non-ACCEPT chain policies (counters dropped); empty where iptables is not installed."""
    rules = []
    for tool in ("iptables-save", "ip6tables-save"):
        for line in _run(tool).splitlines():
            line = re.sub(r"\[\d+:\d+\]", "", line).strip()
            if line.startswith("-A") or (line.startswith(":") and not line.endswith("ACCEPT")):
                rules.append(f"{tool}: {line}")
    return sorted(rules)


def docker_processes() -> dict[int, str]:
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                name = (proc / "comm").read_text().strip()
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if DOCKER_PROCESSES.match(name) and state not in ("Z", "X"):  # an exited one waiting to be reaped is gone
                found[int(proc.name)] = name
    return found


def host_state() -> dict:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return {
        "links": sorted(re.findall(r"^\d+: ([^:@]+)", _run("ip", "-o", "link", "show"), re.M)),
        "addresses": sorted(re.findall(r"^\d+: (\S+)\s+(inet6? \S+)", _run("ip", "-o", "addr", "show"), re.M)),
        "routes": sorted(_run("ip", "route", "show").splitlines()),
        "firewall": firewall_rules(),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "docker_processes": docker_processes(),
        "docker_mounts": sorted(m for m in mounts if "docker" in m or "/vmr-docker." in m or "overlay" in m),
    }


def helpers_running() -> list[str]:
    """Command lines of processes the script starts besides Docker (the loopback pip server) or that use its folder."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and ("docker_pip_sources.py" in cmdline or "/tmp/vmr-docker." in cmdline):
            found.append(cmdline)
    return found


@pytest.mark.timeout(TIMEOUT_S + 400)  # its own limit, then up to 300 s of teardown
def test_docker_compose_up_for_real():
    assert os.geteuid() == 0, "the Docker smoke test needs root (CI runs as root): it installs and starts dockerd"
    cache = cache_dir()
    before = host_state()
    proc = subprocess.Popen(["bash", str(SCRIPT)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "VMR_DOCKER_CACHE": str(cache)})
    try:
        log, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:  # SIGTERM: the script tears down what it started before it exits
        proc.terminate()
        log, _ = proc.communicate(timeout=300)
        log += f"\n(the test stopped docker-smoke.sh after {TIMEOUT_S} s)"
    after = host_state()
    sys.stderr.write(log[-6000:])  # the timings and /healthz, shown with -s or on failure
    failure = [line for line in log.splitlines() if "FAILED" in line]
    assert proc.returncode == 0, f"docker-smoke.sh failed ({proc.returncode}): {failure}\n{log[-4000:]}"

    # what the script proved, from its own report
    assert re.search(r'/healthz \(first\): .*"scan_backend": "cpp"', log), log[-2000:]
    assert re.search(r"search \(first\): \[\('", log), log[-2000:]
    assert "401 without the key, 403 with a wrong one, 200 with it" in log
    assert "kept across down/up" in log and "all checks passed" in log

    # the host as it was found: no daemon, no container process, no mount, no network change
    for key in ("links", "addresses", "routes", "firewall", "ip_forward", "docker_mounts"):
        assert after[key] == before[key], f"{key} changed: {before[key]} -> {after[key]}"
    deadline = time.monotonic() + 30  # a container's shim may take a moment to exit after the daemons stopped
    while (new_processes := {pid: name for pid, name in docker_processes().items()
                             if pid not in before["docker_processes"]}) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not new_processes, f"Docker processes left running: {new_processes}"
    containers = cache / "data-root" / "containers"
    assert not containers.exists() or not any(containers.iterdir()), f"containers left in {containers}"
    volumes = cache / "data-root" / "volumes"
    assert not volumes.exists() or {p.name for p in volumes.iterdir()} <= {"metadata.db", "backingFsBlockDev"}, \
        f"volumes left in {volumes}: {sorted(p.name for p in volumes.iterdir())}"
    assert not list(Path("/tmp").glob("vmr-docker.*")), "the run's private folder was left in /tmp"
    assert not helpers_running(), f"processes of the run left: {helpers_running()}"


@pytest.fixture(autouse=True)
def _policy_rc_d_untouched():
    """The script may add /usr/sbin/policy-rc.d during an apt install; it must leave it as it found it."""
    policy = Path("/usr/sbin/policy-rc.d")
    existed = policy.exists()
    content = policy.read_bytes() if existed else None
    yield
    assert policy.exists() == existed and (not existed or policy.read_bytes() == content)
