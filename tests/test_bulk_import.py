"""`python -m service import`: the Parquet import format written by `encoders.extract --format parquet`, stored
whole or refused whole (wrong dimension, another model, a missing column, a corrupt file, non-unit vectors), and
resumed by running it again."""
import json

import numpy as np
import pytest

from encoders.extract import main as extract
from encoders.vector_table import video_table, write_tables
from encoders.video_text import load_embedder
from index import FaissLibrary
from index.records import normalize
from service.__main__ import main as service_main
from test_service_helpers import save_tiny_model, write_clip


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two real MP4s and their window vectors in the import format, written by encoders.extract."""
    root = tmp_path_factory.mktemp("import")
    model = save_tiny_model(root / "model")
    videos = root / "videos"
    videos.mkdir()
    clips = [write_clip(videos / f"clip{i}.mp4", seconds=3.0 + i, seed=i) for i in range(2)]
    (videos / "broken.mp4").write_bytes(b"not a video")
    out = root / "vectors.parquet"
    assert extract([str(videos), "--format", "parquet", "--model-path", str(model), "--out", str(out),
                    "--window", "2", "--stride", "1", "--device", "cpu"]) == 0
    return root, model, clips, out


def import_(*args) -> int:
    return service_main(["import", *map(str, args)])


def stored(data_dir, dim=32):
    lib = FaissLibrary(data_dir / "index", dim)
    try:
        return {lib.get_video(v.id).path: lib.video_segments(v.id) for v in lib.list_videos(None, 0, 100)[0]}
    finally:
        lib.close()


def test_extract_then_import_equals_the_embedder_and_resumes(made, tmp_path, capsys):
    root, model, clips, out = made
    data = tmp_path / "data"
    assert import_(out, "--data-dir", data, "--model-path", model) == 0
    assert "imported 2 video(s)" in capsys.readouterr().out
    library = stored(data)
    embedder = load_embedder(str(model))
    for clip in clips:
        emb = embedder.embed_video(clip, 2.0, 1.0)
        spans, vectors = library[str(clip.resolve())]
        assert spans == emb.spans
        np.testing.assert_allclose(vectors, emb.vectors, atol=1e-6)
    lib = FaissLibrary(data / "index", 32)
    assert json.loads(lib.get_meta("model"))["fingerprint"] == embedder.fingerprint  # what the service checks
    lib.close()
    assert import_(out, "--data-dir", data) == 0  # run again: everything is already there
    assert "imported 0 video(s)" in capsys.readouterr().out and len(stored(data)) == 2


def bad_file(path, **change):
    """A one-video file of the import format with one thing changed."""
    rng = np.random.default_rng(0)
    vectors = change.pop("vectors", normalize(rng.standard_normal((3, 32))))
    table = video_table("/media/x.mp4", [(0, 2), (1, 3), (2, 4)], vectors, 4.0, "x", {"kind": "test"})
    if "drop" in change:
        table = table.drop_columns([change.pop("drop")])
    write_tables(path, [table], change.pop("fingerprint", None))
    return path


@pytest.mark.parametrize("case, message", [
    ("dimension", "16-d"), ("missing", "missing column(s) vector"), ("corrupt", "not a readable Parquet file"),
    ("norm", "unit length"), ("model", "made by model"), ("other-model", "--model-path is model")])
def test_refused_imports_write_nothing(made, tmp_path, capsys, case, message):
    root, model, _, out = made
    data = tmp_path / "data"
    assert import_(out, "--data-dir", data, "--model-path", model) == 0  # a library of the tiny model
    before = stored(data)
    folder = tmp_path / "batch"
    bad_file(folder / "a-good.parquet")
    if case == "dimension":
        bad_file(folder / "b.parquet", vectors=normalize(np.ones((3, 16))))
    elif case == "missing":
        bad_file(folder / "b.parquet", drop="vector")
    elif case == "corrupt":
        (folder / "b.parquet").write_bytes(b"PAR1 this is not parquet")
    elif case == "norm":
        bad_file(folder / "b.parquet", vectors=np.full((3, 32), 0.5, np.float32))
    elif case == "model":
        bad_file(folder / "b.parquet", fingerprint="0" * 64)
    args = ["--model-path", root / "other"] if case == "other-model" else []
    if case == "other-model":
        save_tiny_model(root / "other", seed=1)
    assert import_(folder, "--data-dir", data, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "nothing was imported" in err, err
    assert stored(data).keys() == before.keys()
