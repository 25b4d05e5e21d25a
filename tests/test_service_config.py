"""service.config: flags over VMR_* variables over defaults, and clear errors."""
import pytest

from service.config import config_from_args


def test_flags_win_over_environment():
    cfg = config_from_args(["--port", "9001", "--index-kind", "hnsw"],
                           {"VMR_PORT": "9000", "VMR_MAX_K": "50", "VMR_MICRO_BATCHING": "false"})
    assert (cfg.port, cfg.max_k, cfg.micro_batching, cfg.index.kind) == (9001, 50, False, "hnsw")
    assert cfg.embedded_default and cfg.media_root == cfg.data_dir / "media"


def test_model_path_turns_off_the_embedded_default():
    assert not config_from_args(["--model-path", "m"], {}).embedded_default


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="VMR_PORT='eighty'"):
        config_from_args([], {"VMR_PORT": "eighty"})
    with pytest.raises(ValueError, match="needs an API key"):
        config_from_args(["--host", "0.0.0.0"], {})
    assert config_from_args(["--host", "0.0.0.0", "--api-key", "k" * 8], {}).api_key == "k" * 8
    with pytest.raises(ValueError, match="segment_stride"):
        config_from_args(["--segment-window", "2", "--segment-stride", "3"], {})


def test_index_nprobe_flag_and_variable():
    assert config_from_args([], {}).index.nprobe == 0  # IndexConfig's per-kind default
    assert config_from_args([], {"VMR_INDEX_NPROBE": "24"}).index.nprobe == 24
    assert config_from_args(["--index-nprobe", "8"], {"VMR_INDEX_NPROBE": "24"}).index.nprobe == 8
    with pytest.raises(ValueError, match="VMR_INDEX_NPROBE='many'"):
        config_from_args([], {"VMR_INDEX_NPROBE": "many"})
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        config_from_args(["--index-nprobe", "0"], {})
