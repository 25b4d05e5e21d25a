"""schemathesis (4.x) against the live OpenAPI schema of `python -m service` on loopback, with the API key, in a
bounded run: no server error, and every answer (status, content type, headers, body) is one the schema documents."""
import re
import subprocess
import sys

import pytest

from test_service_helpers import API_KEY, Service, save_tiny_model, upload, wait_jobs, write_clip

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance")


@pytest.mark.slow  # about two minutes: thousands of generated requests, fuzzing until --max-time
def test_every_answer_is_documented_and_none_is_a_server_error(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    service = Service(tmp_path / "data", model, "--max-upload-mb", "1").start()
    try:
        with service.client() as c:  # something to find, so that searches reach the index
            wait_jobs(c, [upload(c, write_clip(tmp_path / f"c{i}.mp4", 2.0, seed=i)).json()["id"] for i in range(2)])
        run = subprocess.run([sys.executable, "-m", "schemathesis.cli", "run", f"{service.url}/openapi.json",
                              "--header", f"X-API-Key: {API_KEY}", "--checks", CHECKS, "--phases",
                              "examples,coverage,fuzzing", "--max-examples", "10", "--seed", "19", "--workers", "2",
                              "--max-time", "100", "--request-timeout", "60", "--suppress-health-check", "all",
                              "--no-color"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
        summary = run.stdout[run.stdout.rfind("SUMMARY"):]
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        operations = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", summary)
        assert operations and len(set(operations.groups())) == 1, summary  # every operation was tried
        assert re.search(r"\d+ generated, \d+ passed\n", summary) and "fail" not in summary.lower(), summary
        with service.client() as c:
            assert c.get("/livez").json() == {"status": "ok"}
    finally:
        service.kill()
