import numpy as np
import pytest
import torch

from encoders.extract import VideoFeatureExtractor, main
from media import VideoDecodeError, load_video, write_video


@pytest.fixture(scope="module", autouse=True)
def portable_scan():
    """The pure-torch scan: these tests are about extraction, not about building the C++ kernel."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIDEOMAMBA_SCAN_BACKEND", "torch")
        yield


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for name in ("a.mp4", "sub/b.mp4"):
        (root / name).parent.mkdir(exist_ok=True)
        write_video(root / name, rng.integers(0, 255, (10, 40, 48, 3), dtype=np.uint8), fps=8)
    (root / "broken.mp4").write_bytes(b"not a video")
    return root


@pytest.fixture(scope="module")
def fx():
    torch.manual_seed(0)
    return VideoFeatureExtractor("videomamba_test_tiny", num_frames=4, size=32, device="cpu")


def test_encode_video_gives_pooled_features_and_tokens(fx, videos):
    pooled = fx.encode_video(videos / "a.mp4")
    assert pooled.shape == (fx.dim,) == (32,)
    pooled2, tokens = fx.encode_video((videos / "a.mp4").read_bytes(), return_tokens=True)
    assert tokens.shape == (4 * 16, 32)  # 4 frames x (32/8)^2 patches, cls removed
    assert torch.allclose(pooled, pooled2)
    assert not torch.allclose(pooled, fx.encode_video(videos / "sub" / "b.mp4"))


def test_encode_tensor_batches_like_single_clips(fx, videos):
    a = load_video(videos / "a.mp4", num_frames=4, size=32)
    b = load_video(videos / "sub" / "b.mp4", num_frames=4, size=32)
    batch = fx.encode_tensor(torch.stack([a, b]))
    assert batch.shape == (2, 32)
    assert torch.allclose(batch[0], fx.encode_tensor(a), atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        fx.encode_tensor(torch.zeros(3, 32, 32))
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        fx.encode_video(videos / "broken.mp4")


def test_cli_writes_one_npy_per_video_and_skips_bad_files(videos, tmp_path, capsys):
    out = tmp_path / "feats"
    rc = main([str(videos), "--model", "videomamba_test_tiny", "--num-frames", "4", "--size", "32",
               "--out", str(out), "--tokens", "--device", "cpu"])
    assert rc == 0
    assert np.load(out / "a.mp4.npy").shape == (32,)
    assert np.load(out / "sub" / "b.mp4.tokens.npy").shape == (64, 32)
    err = capsys.readouterr().err
    assert "skipped 1 bad file" in err and "broken.mp4" in err


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_cli_single_file_outputs(videos, tmp_path, suffix):
    out = tmp_path / f"feats{suffix}"
    assert main([str(videos / "a.mp4"), "--model", "videomamba_test_tiny", "--num-frames", "4", "--size", "32",
                 "--out", str(out), "--per-frame", "--device", "cpu"]) == 0
    if suffix == ".npz":
        feats = dict(np.load(out))
    else:
        from safetensors.numpy import load_file

        feats = load_file(str(out))
    assert list(feats) == ["a.mp4"] and feats["a.mp4"].shape == (4, 32)
