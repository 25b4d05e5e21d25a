"""Every command line answers a missing or malformed input with one clear message and exit status 2, no traceback
(each case a subprocess, as a user meets it), and `--help` describes every flag with its real default."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "VIDEOMAMBA_SCAN_BACKEND": "torch", "OMP_NUM_THREADS": "1"}


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=600)


def refused(result: subprocess.CompletedProcess, *phrases: str) -> str:
    """The stderr of a run that must have stopped with a user error saying all `phrases`."""
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for phrase in phrases:
        assert phrase in result.stderr, f"{phrase!r} not in:\n{result.stderr}"
    return result.stderr


@pytest.fixture(scope="module")
def corrupt_root(msrvtt_root, tmp_path_factory):
    """The tiny synthetic corpus with its annotation files broken: msrvtt's JSON cut short, webvid's caption gone."""
    root = tmp_path_factory.mktemp("corrupt") / "data"
    shutil.copytree(msrvtt_root, root)
    test_file = root / "anno_downstream" / "msrvtt_ret_test1k.json"
    test_file.write_text(test_file.read_text()[:200])
    webvid = root / "anno_pretrain" / "webvid_train.json"
    records = json.loads(webvid.read_text())
    del records[3]["caption"]
    webvid.write_text(json.dumps(records))
    return root


@pytest.mark.slow  # eight subprocesses: about 45 s on an idle machine
def test_pretraining_says_what_is_missing_or_wrong(tmp_path, msrvtt_root, corrupt_root):
    err = refused(run("training.pretrain", "--data", "webvid", cwd=tmp_path),
                  "no webvid data: the folder 'data' does not exist", "anno_pretrain/webvid_train.json",
                  "WebVid's CSV", "WebDataset shards", "https://github.com/m-bain/webvid",
                  "without downloads: python -m training.pretrain --data synth")
    assert len(err.strip().splitlines()) <= 5
    refused(run("training.pretrain", "--data", "cc3m", "--data-root", str(msrvtt_root / "MSRVTT_Videos")),
            "no cc3m data under", "cc3m_train.json", "CC3M/*.tar", "conceptual-captions")
    refused(run("training.pretrain", "--data", "webvid", "--data-root", str(corrupt_root)),
            "webvid_train.json: record 3: missing field 'caption'")
    released = tmp_path / "released"
    released.mkdir()
    (released / "results_2M_train.csv").write_text("videoid,contentUrl,duration,page_dir\n1,u,PT00H00M05S,000001\n")
    refused(run("training.pretrain", "--data", "webvid", "--data-root", str(released)),
            "results_2M_train.csv: missing column(s) name")
    config = tmp_path / "typo.yaml"
    config.write_text("data: {batch_sise: 4}\n")
    refused(run("training.pretrain", "--config", str(config)),
            "typo.yaml", "unknown config key 'data.batch_sise'; valid here:", "batch_size")
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    refused(run("training.pretrain", "--data", "synth", "--data-root", str(msrvtt_root), "--init-from",
                str(not_a_model)), "is not a saved VideoTextModel: config.json is missing")
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "00000.tar").write_bytes(b"")
    refused(run("training.pretrain", "--data", "webvid", "--shards", str(shards / "{00000..00001}.tar")),
            "1 of 2 shard(s)", "do not exist", "00001.tar")
    from test_shards import write_shards

    write_shards(shards, shards=1, per_shard=1)
    refused(run("training.pretrain", "--data", "webvid", "--shards", str(shards / "00000.tar")),
            "shards are streamed and have no known length; give --max-steps N")


@pytest.mark.slow  # six subprocesses: about 35 s on an idle machine
def test_evaluation_and_finetuning_say_what_is_missing_or_wrong(tmp_path, msrvtt_root, corrupt_root):
    err = refused(run("retrieval.eval", "--bench", "didemo", "--data-root", "/nonexistent"),
                  "no didemo annotation file at /nonexistent/anno_downstream/didemo_ret_test.json", "DiDeMo/",
                  "https://github.com/LisaAnne/LocalizingMoments",
                  "without downloads: omit --data-root and a synthetic didemo split is generated")
    assert len(err.strip().splitlines()) <= 5
    empty = tmp_path / "only-annotations"
    shutil.copytree(msrvtt_root / "anno_downstream", empty / "anno_downstream")
    refused(run("retrieval.eval", "--bench", "msrvtt", "--data-root", str(empty)),
            "msrvtt_ret_test1k.json names videos that are not there", "MSRVTT_Videos does not exist")
    refused(run("retrieval.eval", "--bench", "msrvtt", "--data-root", str(corrupt_root)),
            "msrvtt_ret_test1k.json: not valid JSON")
    text = tmp_path / "model.pth"
    text.write_text("not a checkpoint")
    refused(run("retrieval.eval", "--bench", "msrvtt", "--data-root", str(msrvtt_root), "--checkpoint", str(text)),
            "model.pth is not a PyTorch checkpoint")
    refused(run("retrieval.eval", "--bench", "msrvtt", "--checkpoint", str(tmp_path / "nope")),
            "--checkpoint", "does not exist")
    refused(run("training.finetune", "--bench", "lsmdc", "--data-root", str(tmp_path)),
            "no lsmdc annotation file", "lsmdc_ret_test_1000.json", "omit --data-root and synthetic lsmdc train")


@pytest.mark.slow  # five subprocesses: about 30 s on an idle machine
def test_extraction_synthesis_and_the_service_say_what_is_wrong(tmp_path):
    refused(run("encoders.extract", str(tmp_path / "nothing"), "--out", str(tmp_path / "f")),
            "input", "nothing does not exist")
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"no video in here")
    refused(run("encoders.extract", str(tmp_path / "clips"), "--out", str(tmp_path / "f"), "--model",
                "videomamba_test_tiny"), "none of the 1 file(s)", "could be decoded")
    refused(run("retrieval.synth", "--out", str(tmp_path / "s"), "--frames", "7"), "frames must be even")
    (tmp_path / "model").mkdir()
    refused(run("service", "--model-path", str(tmp_path / "model"), "--data-dir", str(tmp_path / "d")),
            "is not a saved VideoTextModel")
    refused(run("service", "--library", str(tmp_path / "no-such-folder")), "--library", "no such folder")


def parsers():
    from encoders.extract import build_parser as extract
    from retrieval.eval import build_parser as evaluate
    from retrieval.synth.__main__ import build_parser as synth
    from service.config import build_parser as service
    from training.finetune import build_parser as finetune
    from training.pretrain import build_parser as pretrain

    return {"encoders.extract": extract(), "retrieval.eval": evaluate(), "retrieval.synth": synth(),
            "service": service(), "training.finetune": finetune(), "training.pretrain": pretrain()}


def test_every_flag_is_described_and_no_default_reads_none():
    for name, parser in parsers().items():
        for action in parser._actions:
            if action.dest == "help":
                continue
            assert action.help and len(action.help) > 10, f"{name} {action.option_strings}: no description"
            assert "default: None" not in action.help and "default None" not in action.help, (name, action.help)
            if action.default not in (None, False) and not action.required and action.dest != "set":
                assert "default" in action.help, f"{name} {action.option_strings}: default not said"


def test_service_help_shows_real_defaults():
    help_text = " ".join(run("service", "--help").stdout.split())  # argparse wraps lines at the terminal's width
    assert "default: <data_dir>/media" in help_text and "true when neither --model-path nor --library" in help_text
