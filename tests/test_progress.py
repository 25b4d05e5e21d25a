"""Long jobs show a tqdm bar on stderr, and --no-progress turns it off (for logs): synthetic generation, extraction,
evaluation (pretraining: test_shards.py)."""
import numpy as np
import pytest

from media import write_video

SMALL_SYNTH = ["--size", "16", "--frames", "2", "--webvid", "2", "--cc3m", "0", "--msrvtt-train", "0",
               "--msrvtt-test", "0", "--msvd-train", "0", "--msvd-test", "0", "--lsmdc-train", "0", "--lsmdc-test", "0",
               "--didemo-train", "0", "--didemo-test", "0", "--anet-train", "0", "--anet-val", "0", "--workers", "1"]


@pytest.mark.parametrize("quiet", [False, True])
def test_synthetic_generation(tmp_path, capsys, quiet):
    from retrieval.synth.__main__ import main

    main(["--out", str(tmp_path / "s")] + SMALL_SYNTH + (["--no-progress"] if quiet else []))
    assert ("rendering: 100%" in capsys.readouterr().err) != quiet


@pytest.mark.parametrize("quiet", [False, True])
def test_extraction(tmp_path, capsys, monkeypatch, quiet):
    from encoders.extract import main

    monkeypatch.setenv("VIDEOMAMBA_SCAN_BACKEND", "torch")
    write_video(tmp_path / "a.mp4", np.zeros((4, 32, 32, 3), np.uint8))
    assert main([str(tmp_path / "a.mp4"), "--model", "videomamba_test_tiny", "--num-frames", "2", "--size", "32",
                 "--out", str(tmp_path / "f")] + (["--no-progress"] if quiet else [])) == 0
    assert ("extracting: 100%" in capsys.readouterr().err) != quiet


@pytest.mark.parametrize("quiet", [False, True])
def test_evaluation(msrvtt_root, tmp_path, capsys, quiet):
    from retrieval import eval as cli

    cli.main(["--bench", "msrvtt", "--data-root", str(msrvtt_root), "--cache-dir", str(tmp_path), "--checkpoint",
              cli.TINY_MODEL, "--num-frames", "4", "--k-test", "4", "--batch-size", "4"]
             + (["--no-progress"] if quiet else []))
    err = capsys.readouterr().err
    assert all((stage in err) != quiet for stage in ("texts: 100%", "videos: 3it", "itm re-rank: 100%"))
