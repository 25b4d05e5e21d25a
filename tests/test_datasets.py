import os
import warnings

import pytest
import torch
from torch.utils.data import DataLoader

from retrieval.corpora import load_benchmark, load_pairs
from retrieval.datasets import BadMediaWarning, SkipLog, VideoEvalDataset, VideoTextTrainDataset
from retrieval.synth import SynthConfig, generate


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A generated corpus with one corrupt, one zero-byte and one missing video in msrvtt train and test."""
    root = tmp_path_factory.mktemp("damaged")
    generate(SynthConfig.tiny(root), progress=False)
    bad = {}
    for split in ("train", "test"):
        paths = sorted({p.media for p in load_pairs("msrvtt", root, split).items})
        corrupt, empty, missing = paths[1], paths[4], paths[6]
        with open(corrupt, "r+b") as f:  # keep the size, scramble the container
            data = bytearray(f.read())
            data[: len(data) // 2] = b"\x00" * (len(data) // 2)
            f.seek(0)
            f.write(data)
        open(empty, "wb").close()
        os.remove(missing)
        bad[split] = {corrupt: "", empty: "empty", missing: "not found"}
    return root, bad


def _run(loader) -> tuple[SkipLog, list[dict]]:
    log, batches = SkipLog("test"), []
    for batch in loader:
        batches.append(log.update(batch))
    return log, batches


@pytest.mark.parametrize("workers", [0, 2])
def test_training_loader_skips_exactly_the_bad_files(damaged, workers):
    root, bad = damaged
    pairs = load_pairs("msrvtt", root, "train")
    ds = VideoTextTrainDataset(pairs, num_frames=4, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadMediaWarning)
        log, batches = _run(DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=ds.collate))
    assert set(log.items) == set(bad["train"]) and log.count == 3
    for path, reason in bad["train"].items():
        assert reason in log.items[path]
    seen = torch.cat([b["index"] for b in batches])
    assert len(seen) == len(pairs) - 3
    good = next(b for b in batches if len(b["index"]))
    assert good["video"].shape[1:] == (4, 3, 32, 32)
    assert len(good["caption"]) == len(good["index"]) == len(good["sample_id"])
    text = log.summary(file=None)
    assert "skipped 3 bad file(s)" in text and all(p in text for p in bad["train"])


def test_eval_loader_reports_the_bad_videos_and_keeps_indices(damaged):
    root, bad = damaged
    bench = load_benchmark("msrvtt", root)
    ds = VideoEvalDataset(bench, num_frames=4, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadMediaWarning)
        log, batches = _run(DataLoader(ds, batch_size=3, num_workers=2, collate_fn=ds.collate))
    assert set(log.items) == set(bad["test"])
    present = torch.cat([b["index"] for b in batches]).tolist()
    missing = {bench.videos.index(p) for p in bad["test"]}
    assert sorted(present) == [i for i in range(len(bench.videos)) if i not in missing]


def test_bad_item_warns_with_its_name(damaged):
    root, bad = damaged
    bench = load_benchmark("msrvtt", root)
    ds = VideoEvalDataset(bench, num_frames=2, size=16)
    missing = next(p for p, r in bad["test"].items() if r == "not found")
    with pytest.warns(BadMediaWarning, match=missing.split("/")[-1]):
        item = ds[bench.videos.index(missing)]
    batch = ds.collate([item])
    assert batch["video"].shape == (0, 2, 3, 16, 16) and batch["skipped"][0][0] == missing


def test_train_items_use_train_sampling_and_eval_items_are_deterministic(damaged):
    root, bad = damaged
    bench = load_benchmark("msrvtt", root)
    good = next(i for i, p in enumerate(bench.videos) if p not in bad["test"])
    ev = VideoEvalDataset(bench, num_frames=4, size=32)
    assert torch.equal(ev[good]["video"], ev[good]["video"])
    pairs = load_pairs("webvid", root)
    tr = VideoTextTrainDataset(pairs, num_frames=4, size=32)
    torch.manual_seed(0)
    draws = [tr[0]["video"] for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # random crops/flips differ
    images = VideoTextTrainDataset(load_pairs("cc3m", root), num_frames=4, size=32)
    assert images[0]["video"].shape == (1, 3, 32, 32)


def test_unaugmented_training_clips_are_resized_frames_in_rand_order(tmp_path):
    """augment=False: random frame sampling stays, but no crop or flip (which would contradict captions that
    name left/right or sizes)."""
    import random

    from media import load_video

    generate(SynthConfig.tiny(tmp_path), progress=False)
    pairs = load_pairs("webvid", tmp_path)
    plain, augmented = (VideoTextTrainDataset(pairs, num_frames=4, size=32, augment=a) for a in (False, True))
    differs = 0
    for i in range(6):
        random.seed(i)
        torch.manual_seed(i)
        got = plain[i]["video"]
        random.seed(i)
        expected = load_video(pairs.items[i].media, num_frames=4, sample="rand", size=32, train=False)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        random.seed(i)
        torch.manual_seed(i)
        differs += not torch.equal(augmented[i]["video"], got)
    assert differs > 0  # the default pipeline does crop/flip the same clips
