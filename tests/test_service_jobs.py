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


def test_an_ingestion_job_reports_progress_after_every_batch_of_windows(tmp_path):
    """A 6 s video cut into 2 s windows every 0.5 s is 9 windows, embedded 4 at a time: GET /jobs/{id} sees the
    progress rise three times before the job is done."""
    from service import ingest
    from service.config import ServiceConfig
    from service.state import build_state
    from test_service_helpers import save_tiny_model, write_clip

    config = ServiceConfig(data_dir=tmp_path / "data", model_path=str(save_tiny_model(tmp_path / "model")),
                           segment_window=2.0, segment_stride=0.5)
    state = build_state(config)
    bodies = []
    state.jobs.submit = lambda kind, source, body: bodies.append(body)  # run the job body here, not in the worker
    ingest.submit(state, write_clip(tmp_path / "long.mp4", seconds=6.0, seed=0), {}, None, "path", "long.mp4")
    seen = []
    video_id = bodies[0](seen.append)
    assert len(state.library.get_video(video_id).segments) == 9
    assert len(seen) == 3 and 0 < seen[0] < seen[1] < seen[2] < 1  # 1.0 is the job manager's, once stored
    state.library.close()
