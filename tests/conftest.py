"""Fixtures shared by several test modules."""
from pathlib import Path

import pytest
import torch

from encoders.video_text import VideoTextConfig, build_video_text_model, make_tokenize
from retrieval.synth.writer import SynthConfig, generate


@pytest.fixture(scope="module")
def tiny():
    """A tiny joint model with a CLIP-shaped teacher, its tokenizer, 3 random clips and 3 tokenized captions."""
    torch.manual_seed(0)
    cfg = VideoTextConfig(vision_model="videomamba_test_tiny", vision_overrides={"clip_output_dim": 32},
                          teacher="clip_test_tiny", max_txt_len=12)
    model, tokenizer = build_video_text_model(cfg)
    ids, mask = make_tokenize(tokenizer, 12)(["a red square moves left", "a blue circle grows",
                                              "a green star rotates clockwise"])
    video = torch.randn(3, 4, 3, 32, 32)
    return model, tokenizer, video, ids, mask


@pytest.fixture(scope="module")
def msrvtt_root(tmp_path_factory):
    """The generator's tiny corpus: 10 msrvtt test clips (some in hard-negative groups), 12 train clips, 2 DiDeMo."""
    root = tmp_path_factory.mktemp("synth")
    generate(SynthConfig.tiny(root), progress=False)
    return root


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """`python -m service` as scripts/demo.sh runs it: the embedded demo library indexed with the committed demo
    model, with the default segments; built once for the page's and the README's tests."""
    from encoders.video_text import demo_model_path
    from test_service_helpers import Service

    root = tmp_path_factory.mktemp("demo")
    service = Service(root / "data", Path(demo_model_path()), "--embedded-default", "true", "--segment-window",
                      "8", "--segment-stride", "4", api_key=None).start()
    yield service
    service.kill()
