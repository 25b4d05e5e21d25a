"""`python -m service --library DIR` through a real uvicorn on loopback: a folder indexed at start, a file added
later picked up, an undecodable file reported once, and a restart that re-indexes nothing."""
import time

import pytest

from test_service_helpers import Service, save_tiny_model, write_clip


def wait_library(client, done, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = client.get("/healthz").json()
        if done(health["library"]):
            return health
        time.sleep(0.3)
    raise TimeoutError(f"library folder not as expected after {timeout} s: {health}")


@pytest.mark.slow  # about 40 s: two service starts and four small videos
def test_library_folder_is_indexed_watched_and_not_reindexed(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    folder = tmp_path / "my videos"
    (folder / "trip").mkdir(parents=True)
    write_clip(folder / "a.mp4", seconds=2.0, seed=1)
    write_clip(folder / "trip" / "b.MP4", seconds=2.0, seed=2)
    (folder / "broken.mp4").write_bytes(b"this is not a video")
    (folder / "notes.txt").write_text("not a video file at all")
    service = Service(tmp_path / "data", model, "--library", str(folder), "--library-poll-s", "0.3")
    service.start()
    try:
        with service.client() as c:
            health = wait_library(c, lambda lib: lib["indexed"] == 2 and lib["failed"] == 1)
            assert health["library"] == {"folder": str(folder.resolve()), "files_seen": 3, "indexed": 2,
                                         "pending": 0, "failed": 1, "status": "watching"}
            assert health["videos"] == 2 and health["default_library"] is None  # no demo library beside a folder
            write_clip(folder / "trip" / "c.mp4", seconds=3.0, seed=3)
            health = wait_library(c, lambda lib: lib["indexed"] == 3)
            assert health["videos"] == 3 and health["library"]["files_seen"] == 4
            titles = sorted(c.get(f"/videos/{i}").json()["title"] for i in (1, 2, 3))
            assert titles == ["a.mp4", "b.MP4", "c.mp4"]  # the file names (responses carry no server paths)
            jobs = health["jobs"]
            time.sleep(1.0)  # a few more looks at the folder: the broken file is not tried again
        assert service.log.read_text().count("broken.mp4 not indexed") == 1
    finally:
        service.stop()

    service.start()
    try:
        with service.client() as c:
            health = wait_library(c, lambda lib: lib["status"] == "watching")
            assert health["videos"] == 3 and health["library"]["indexed"] == 3
            assert health["jobs"] == jobs  # the records of the first run, and no new job
    finally:
        service.stop()
