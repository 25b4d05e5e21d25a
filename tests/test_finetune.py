"""`python -m training.finetune`: fine-tune on a tiny synthetic benchmark's train split, then evaluate."""
import pytest
import torch

from encoders.video_text import load_video_text_model
from retrieval import eval as cli
from training.finetune import main as finetune_main

COMMON = ["--checkpoint", cli.TINY_MODEL, "--num-frames", "4", "--k-test", "4", "--no-progress", "--batch-size", "4"]


@pytest.mark.slow  # two training steps plus two evaluations: about 15 s on an idle 2-core machine
def test_finetune_then_evaluate(msrvtt_root, tmp_path):
    """A few VTC+VTM steps on the train split change the weights, the tuned model is saved and then
    evaluated (never from cached embeddings)."""
    out_dir = tmp_path / "ft"
    args = ["--bench", "msrvtt", "--data-root", str(msrvtt_root), "--cache-dir", str(tmp_path),
            "--output", str(tmp_path / "f.json"), "--train-batch-size", "4", "--max-steps", "2",
            "--lr", "1e-3", "--no-augment", "--output-dir", str(out_dir)] + COMMON
    before = cli.main(args[:8] + COMMON)
    after = finetune_main(args)
    assert not after["meta"]["embeddings_cached"] and after["meta"]["embeddings_file"] is None
    assert (out_dir / "model" / "model.safetensors").is_file() and list((out_dir / "checkpoints").iterdir())
    tuned, _ = load_video_text_model(str(out_dir / "model"))
    fresh, _, _ = cli.load_model(cli.build_parser().parse_args(["--bench", "msrvtt"] + COMMON))
    changed = [k for k, v in fresh.state_dict().items() if not torch.equal(v, tuned.state_dict()[k])]
    assert "vision_proj.weight" in changed and "itm_head.weight" in changed
    assert after["emb"] != before["emb"]
