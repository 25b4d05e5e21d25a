"""Durable job records: a restart keeps finished jobs and reports unfinished ones as interrupted, not unknown."""
import threading
import time

import pytest

from service.errors import Overloaded
from service.jobs import DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, JobManager


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_records_survive_a_restart_and_unfinished_jobs_read_as_interrupted(tmp_path):
    path = tmp_path / "jobs.sqlite"
    release = threading.Event()
    manager = JobManager(record_path=path)
    manager.start()
    done = manager.submit("path", "a.mp4", lambda progress: 7)
    failed = manager.submit("path", "b.mp4", lambda progress: (_ for _ in ()).throw(ValueError("not a video")))
    running = manager.submit("path", "c.mp4", lambda progress: release.wait() and 9)
    queued = manager.submit("path", "d.mp4", lambda progress: 11)
    wait_for(lambda: running.status == RUNNING)
    assert (done.status, done.video_id) == (DONE, 7) and failed.status == FAILED and queued.status == QUEUED

    restarted = JobManager(record_path=path)  # the first process never finished: as after a SIGKILL
    assert restarted.get(done.id).video_id == 7 and restarted.get(done.id).status == DONE
    assert restarted.get(failed.id).error == "not a video"
    for job in (running, queued):
        record = restarted.get(job.id)
        assert (record.status, record.error, record.source) == (FAILED, INTERRUPTED, job.source)
    assert restarted.counts() == {QUEUED: 0, RUNNING: 0, DONE: 1, FAILED: 3}
    assert restarted.get("no-such-job") is None
    release.set()
    manager.stop()


def test_a_rejected_submission_leaves_no_record(tmp_path):
    path = tmp_path / "jobs.sqlite"
    manager = JobManager(max_queue=1, record_path=path)  # not started: the queue fills
    kept = manager.submit("path", "a.mp4", lambda progress: 1)
    with pytest.raises(Overloaded, match="queue is full"):
        manager.submit("path", "b.mp4", lambda progress: 2)
    assert list(JobManager(record_path=path).counts().values()) == [0, 0, 0, 1]
    assert JobManager(record_path=path).get(kept.id).source == "a.mp4"
