"""WebDataset shards as video2dataset / img2dataset write them: spec parsing, streaming from paths and URLs, the
split across ranks and workers, bad samples, and the corpora found under a data root."""
import functools
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from media import write_image, write_video
from retrieval.corpora import AnnotationError, CorpusNotFound
from retrieval.datasets import BadMediaWarning
from retrieval.shards import ShardStream, expand_braces, read_samples, shard_list
from retrieval.sources import find_source


def clip_bytes(seed: int, frames: int = 6, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    write_video(buffer, rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8), fps=8)
    return buffer.getvalue()


def image_bytes(seed: int, size: int = 32) -> bytes:
    buffer = io.BytesIO()
    write_image(buffer, np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8), codec="mjpeg")
    return buffer.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder, shards: int, per_shard: int, media: str = "mp4", caption_in: str = "txt") -> list[str]:
    """`shards` tar files of `per_shard` samples in video2dataset's layout: {key}.mp4 (or .jpg) with the caption in
    {key}.txt or {key}.json; keys are globally numbered and captions say "sample N"."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for s in range(shards):
        name = folder / f"{s:05d}.tar"
        with tarfile.open(name, "w") as tar:
            for i in range(per_shard):
                key = f"{s:05d}{i:04d}"
                n = s * per_shard + i
                add(tar, f"{key}.{media}", clip_bytes(n) if media == "mp4" else image_bytes(n))
                caption = f"sample {n}"
                if caption_in == "txt":
                    add(tar, f"{key}.txt", caption.encode())
                add(tar, f"{key}.json", json.dumps({"caption": caption, "key": key}).encode())
        names.append(str(name))
    return names


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards") / "WebVid", shards=4, per_shard=3)


def test_specs_name_shards_as_people_write_them(shards, tmp_path):
    folder = shards[0].rsplit("/", 1)[0]
    assert expand_braces("a/{000..002}.tar") == ["a/000.tar", "a/001.tar", "a/002.tar"]
    assert expand_braces("{0..1}-{8..9}") == ["0-8", "0-9", "1-8", "1-9"]
    assert shard_list(f"{folder}/{{00000..00003}}.tar") == shards
    assert shard_list(folder) == shards
    listing = tmp_path / "shards.txt"
    listing.write_text(f"# two shards\n{shards[0]}\n\nhttps://example.invalid/{{00000..00001}}.tar\n")
    assert shard_list(str(listing)) == [shards[0], "https://example.invalid/{00000..00001}.tar"]
    with pytest.raises(CorpusNotFound, match=r"1 of 5 shard\(s\) .* e\.g\. .*00004\.tar"):
        shard_list(f"{folder}/{{00000..00004}}.tar")
    with pytest.raises(CorpusNotFound, match="no .tar shards"):
        shard_list(str(tmp_path))


def test_samples_stream_from_paths_and_urls(shards):
    folder = shards[0].rsplit("/", 1)[0]
    local = list(read_samples(shards[1]))
    assert [key for key, _ in local] == ["000010000", "000010001", "000010002"]
    assert set(local[0][1]) == {"mp4", "txt", "json"} and local[0][1]["txt"] == b"sample 3"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        over_http = list(read_samples(f"http://127.0.0.1:{server.server_port}/00001.tar"))
    finally:
        server.shutdown()
    assert over_http == local
    assert list(read_samples(f"file://{shards[1]}")) == local


def keys_by_worker(shards, rank: int, world: int, workers: int, items: int) -> set[str]:
    stream = ShardStream(shards, num_frames=2, size=32, augment=False, rank=rank, world_size=world)
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    seen = set()
    for n, item in enumerate(loader):
        seen.add(item["caption"])
        if n + 1 == items:
            break
    return seen


def test_shards_split_across_ranks_and_workers_and_cycle(shards):
    """2 ranks x 2 workers over 4 shards of 3 samples: each (rank, worker) streams one shard, over and over."""
    rank0 = keys_by_worker(shards, 0, 2, 2, items=12)
    rank1 = keys_by_worker(shards, 1, 2, 2, items=12)
    assert rank0 == {f"sample {n}" for n in (0, 1, 2, 6, 7, 8)}  # shards 0 and 2
    assert rank1 == {f"sample {n}" for n in (3, 4, 5, 9, 10, 11)}  # shards 1 and 3
    with pytest.raises(ValueError, match="every rank needs at least one"):
        ShardStream(shards[:1], world_size=2)


def test_bad_samples_are_skipped_and_reported_with_the_next_item(tmp_path):
    path = tmp_path / "mixed.tar"
    with tarfile.open(path, "w") as tar:
        add(tar, "a.mp4", b"not a video at all")
        add(tar, "a.txt", b"broken")
        add(tar, "b.mp4", clip_bytes(1))
        add(tar, "c.mp4", clip_bytes(2))
        add(tar, "c.txt", b"A red Circle!")
    with pytest.warns(BadMediaWarning, match="mixed.tar#a"):
        item = next(iter(ShardStream([str(path)], num_frames=2, size=32, augment=False)))
    assert item["caption"] == "a red circle" and item["video"].shape == (2, 3, 32, 32)
    assert [where for where, _ in item["replaced"]] == [f"{path}#a", f"{path}#b"]
    assert "no caption" in item["replaced"][1][1]


def test_data_root_forms_are_found(shards, tmp_path):
    """Shards in <root>/WebVid/ or the root itself, WebVid's CSV as released beside videos/, the official JSON; and
    what is not there or not usable is named."""
    root = Path(shards[0]).parents[1]
    assert find_source("webvid", root).shards == tuple(shards)
    assert find_source("webvid", root / "WebVid").shards == tuple(shards)
    with pytest.raises(CorpusNotFound, match=r"no cc3m data under .*CC3M/\*\.tar"):
        find_source("cc3m", root, alone=False)
    images = write_shards(root / "CC3M", shards=1, per_shard=2, media="jpg", caption_in="json")
    assert find_source("cc3m", root, alone=False).shards == tuple(images)
    with pytest.raises(AnnotationError, match="sample '000000000' has no video member .* it has .jpg, .json"):
        find_source("webvid", root / "CC3M")

    csv_root = tmp_path / "csv"
    (csv_root / "videos" / "000001_000050").mkdir(parents=True)
    (csv_root / "results_2M_train.csv").write_text("videoid,contentUrl,duration,page_dir,name\n"
                                                    "7,https://x.invalid/7.mp4,PT00H00M05S,000001_000050,a dog\n")
    found = find_source("webvid", csv_root)
    assert found.annotation == csv_root / "results_2M_train.csv" and found.media_root == csv_root / "videos"
    (csv_root / "results_10M_val.csv").write_text("videoid,name\n")
    with pytest.raises(CorpusNotFound, match="2 CSV files .* --annotation FILE"):
        find_source("webvid", csv_root)

    with pytest.raises(CorpusNotFound, match=r"no webvid data under .*anno_pretrain/webvid_train\.json.*\*\.csv"):
        find_source("webvid", tmp_path / "csv" / "videos")
    with pytest.raises(CorpusNotFound, match="the folder '/nowhere' does not exist"):
        find_source("webvid", "/nowhere")


TINY = ["--workers", "0", "--set", "data.num_frames=4", "--set", "data.image_size=32",
        "--set", "log_every=1", "--set", "model.video_text={vision_model: videomamba_test_tiny, text_layers: 2, "
        "embed_dim: 16}"]


@pytest.mark.slow  # two tiny training runs: about 30 s on 2 cores
def test_pretrain_streams_video_and_image_shards(shards, tmp_path, capsys):
    """The 5m mix from <root>/WebVid/*.tar and <root>/CC3M/*.tar: batches of both kinds; streamed data needs
    --max-steps, and says so."""
    from training.pretrain import main

    root = Path(shards[0]).parents[1]
    write_shards(root / "CC3M", shards=2, per_shard=2, media="jpg")
    with pytest.raises(SystemExit) as exit_:
        main(["--data", "5m", "--data-root", str(root), "--output", str(tmp_path / "no")] + TINY)
    assert exit_.value.code == 2 and "give --max-steps N" in capsys.readouterr().err
    out = tmp_path / "run"
    main(["--data", "5m", "--data-root", str(root), "--output", str(out), "--batch-size", "2", "--max-steps", "4",
          "--set", "data.image_batch_size=2", "--no-progress"] + TINY)
    assert "stage 2" not in capsys.readouterr().err
    log = (out / "train.log").read_text()
    assert "step 4" in log and " video " in log and " image " in log
    assert (out / "model" / "model.safetensors").is_file()


@pytest.mark.slow  # a tiny training run: about 15 s on 2 cores
def test_pretrain_reads_webvid_csv_as_released_beside_a_flat_video_folder(tmp_path, capsys):
    from training.pretrain import main

    root = tmp_path / "webvid"
    (root / "videos").mkdir(parents=True)
    rows = ["videoid,contentUrl,duration,page_dir,name"]
    for i in range(4):
        (root / "videos" / f"{100 + i}.mp4").write_bytes(clip_bytes(i))
        rows.append(f"{100 + i},https://x.invalid/{100 + i}.mp4,PT00H00M01S,000001_000050,\"clip {i}, in colour\"")
    (root / "results_2M_val.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    main(["--data", "webvid", "--data-root", str(root), "--output", str(out), "--batch-size", "2",
          "--max-steps", "2"] + TINY)
    assert "step 2" in (out / "train.log").read_text()
    assert "no bad files skipped" in (out / "skipped.txt").read_text()
    assert "stage 2: 100%" in capsys.readouterr().err  # the progress bar, shown without --no-progress
