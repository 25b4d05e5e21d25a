"""The contract subset (tests marked `milvus23` in test_library_contract.py) against the real Milvus 2.3 standalone
binary from the PyPI package `milvus` 2.3.5, authentication on (every call with a token; a wrong token refused),
kill and restart: every test of the subset with a FLAT index, and the ones whose answer depends on the index (exact
top-k and grouping, against FAISS) with HNSW and IVF too. Each test makes its own collections, which a 2.3 server
creates and loads in seconds, so running all of it for three index kinds would take most of CI's half hour. The binary listens on every interface, so the run happens in a
network namespace that has only loopback (`unshare --net`, needs root), where the inner run starts the server."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INNER = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "milvus23", "tests/test_library_contract.py", "-k",
         "'flat or search_is_exact or same_top_k or batched_queries'"]


def inner(*extra: str, timeout: float) -> subprocess.CompletedProcess:
    assert shutil.which("unshare") and os.geteuid() == 0, \
        "the Milvus 2.3 binary must run in a loopback-only network namespace: needs root and unshare (util-linux)"
    command = " ".join([sys.executable, *INNER, *extra])
    env = {**os.environ, "VMR_CONTRACT_BACKEND": "milvus23", "PYTHONPATH": str(ROOT)}
    return subprocess.run(["unshare", "--net", "--", "bash", "-c", f"ip link set lo up && exec {command}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # about 10 minutes on an idle 2-core machine: the server starts once and restarts twice
def test_contract_subset_passes_against_milvus_2_3_standalone():
    collected = inner("--collect-only", timeout=300)
    expected = int(re.search(r"(\d+)(?:/\d+)? tests? collected", collected.stdout).group(1))
    kinds = {kind: collected.stdout.count(f"milvus-2.3-{kind}") for kind in ("flat", "hnsw", "ivf")}
    assert expected >= 30 and kinds["flat"] >= 24 and kinds["hnsw"] == kinds["ivf"] >= 6, \
        (kinds, collected.stdout[-2000:])
    run = inner("-rfEs", timeout=2400)
    summary = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert re.search(rf"\b{expected} passed\b", summary) and "skipped" not in summary, summary
