"""`python -m service bulk-ingest`: Ray Data actors embed real MP4s into the import format; the vectors equal what
the service's own ingestion (a real server) stored for the same files, a second run skips what is done, and
--import stores the shards in a Milvus library. One local Ray (2 CPUs, loopback) for the module."""
import os

import numpy as np
import pytest

from encoders.vector_table import parquet_files, read_table, vector_matrix
from index import FaissLibrary
from index.milvus_library import MilvusLibrary
from milvus_servers import MilvusLite
from service.bulk_ingest import bulk_ingest, list_videos
from service.__main__ import main as service_main
from service.config import ServiceConfig
from test_service_helpers import Service, save_tiny_model, upload, wait_jobs, write_clip


@pytest.fixture(scope="module")
def ray_session():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bulk")
    model = save_tiny_model(root / "model")
    videos = root / "videos"
    videos.mkdir()
    clips = [write_clip(videos / f"clip{i}.mp4", seconds=3.0 + i, seed=20 + i) for i in range(3)]
    (videos / "broken.mp4").write_bytes(b"not a video")
    return root, model, clips


def shard_vectors(out):
    """path -> (spans, vectors) over every shard."""
    found = {}
    for file in parquet_files(out):
        table, _ = read_table(file)
        x = vector_matrix(table, file)
        rows = table.select(["path", "start", "end"]).to_pylist()
        for i, row in enumerate(rows):
            spans, vectors = found.setdefault(row["path"], ([], []))
            spans.append((row["start"], row["end"]))
            vectors.append(x[i])
    return {p: (s, np.stack(v)) for p, (s, v) in found.items()}


@pytest.mark.slow  # Ray start-up, a service start and the embedding of three clips
def test_ray_vectors_equal_the_services_ingestion_and_a_rerun_skips_what_is_done(ray_session, files, tmp_path):
    root, model, clips = files
    service = Service(tmp_path / "service", model).start()  # windows of 2 s every 1 s
    try:
        with service.client() as c:
            done = wait_jobs(c, [upload(c, clip).json()["id"] for clip in clips])
        ids = [j["video_id"] for j in done]
    finally:
        service.stop()
    library = FaissLibrary(tmp_path / "service" / "index", 32)
    served = {clip.name: library.video_segments(vid) for clip, vid in zip(clips, ids)}
    library.close()

    config = ServiceConfig(model_path=str(model), segment_window=2.0, segment_stride=1.0)
    out = tmp_path / "shards"
    written, failed = bulk_ingest([str(root / "videos")], out, config, workers=2, shard_videos=2)
    assert written == 3 and [p.endswith("broken.mp4") for p, _ in failed] == [True]
    assert len(parquet_files(out)) == 2
    shards = shard_vectors(out)
    for clip in clips:
        spans, vectors = shards[str(clip.resolve())]
        want_spans, want = served[clip.name]
        assert spans == want_spans
        assert np.abs(vectors - want).max() <= 1e-5

    assert bulk_ingest([str(root / "videos" / "*.mp4")], out, config)[0] == 0  # resumed: nothing left to do
    extra = write_clip(root / "extra.mp4", seconds=2.0, seed=30)
    listing = root / "list.txt"
    listing.write_text(f"{extra}\n{clips[0]}\n")
    assert list_videos([str(listing)]) == [str(extra.resolve()), str(clips[0].resolve())]
    assert bulk_ingest([str(listing)], out, config)[0] == 1


@pytest.mark.slow
def test_bulk_ingest_cli_imports_into_milvus(ray_session, files, tmp_path, capsys):
    root, model, clips = files
    server = MilvusLite(tmp_path / "milvus").start()
    try:
        milvus = ["--index-backend", "milvus", "--milvus-uri", server.uri, "--milvus-collection", "bulk",
                  "--index-kind", "flat"]
        rc = service_main(["bulk-ingest", str(root / "videos"), "--out", str(tmp_path / "shards"), "--import",
                           "--model-path", str(model), "--segment-window", "2", "--segment-stride", "1", *milvus])
        assert rc == 0, capsys.readouterr().err
        assert "imported 3 video(s)" in capsys.readouterr().out
        library = MilvusLibrary(server.uri, 32, "bulk", index_kind="flat")
        try:
            assert library.num_videos() == 3 and library.get_meta("model")
            spans, vectors = library.video_segments(library.list_videos(None, 0, 1)[0][0].id)
            assert len(spans) == len(vectors) >= 2
        finally:
            library.close()
    finally:
        server.kill()
