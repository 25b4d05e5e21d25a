"""``python -m retrieval.synth --out DIR [--seed 0 --size 64 --fps 8 --frames 16 --webvid 2000 ...]``

Writes a synthetic corpus in the official layouts (anno_pretrain/, anno_downstream/ and the media folders of
retrieval/corpora.py): a WebVid-style training corpus (JSON and WebVid's CSV), CC3M-style stills and the five
benchmark splits, and the events split (videos of several events in order, for "A then B"). No download; about a
minute for the defaults on 2 cores. A count of 0 leaves a split out.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from retrieval.cli import fail
from retrieval.synth.writer import SynthConfig, generate

HELP = {
    "out": "output folder, the data root (required)",
    "seed": "one seed for every split: the same seed writes the same files",
    "size": "frame side in pixels (even, >= 16)",
    "fps": "frames per second of the videos",
    "frames": "frames of a short clip (even)",
    "webvid": "clips of the WebVid-style pretraining corpus (anno_pretrain/webvid_train.json and .csv)",
    "cc3m": "stills of the CC3M-style image corpus",
    "msrvtt_train": "clips of the MSR-VTT-style train split",
    "msrvtt_test": "clips of the MSR-VTT-style test split",
    "msvd_train": "clips of the MSVD-style train split",
    "msvd_test": "clips of the MSVD-style test split",
    "msvd_captions": "captions per MSVD-style clip",
    "lsmdc_train": "clips of the LSMDC-style train split",
    "lsmdc_test": "clips of the LSMDC-style test split",
    "didemo_train": "long videos of the DiDeMo-style train split (paragraph captions)",
    "didemo_test": "long videos of the DiDeMo-style test split",
    "didemo_seconds": "length range of the DiDeMo-style videos, seconds",
    "anet_train": "long videos of the ActivityNet-style train split",
    "anet_val": "long videos of the ActivityNet-style val split",
    "anet_seconds": "length range of the ActivityNet-style videos, seconds",
    "events_test": "videos of the events split: 2 or 3 events in order, each video with its order-swapped twin",
    "events_seconds": "length range of one event's part of an events video (the event and its idle time), seconds",
    "two_event_fraction": "share of short clips with two events (\"..., then ...\")",
    "hard_negative_fraction": "share of clips in a reversed or swapped-order pair",
    "shape_twin_fraction": "share of training clips in a pair that differs only in the shape",
    "test_fraction": "share of scenes reserved for the test splits",
    "workers": "rendering processes",
    "crf": "H.264 quality, 0 = lossless",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retrieval.synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(SynthConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "out":
            parser.add_argument(flag, required=True, help=HELP[f.name])
        elif f.type.startswith("tuple"):
            parser.add_argument(flag, type=float, nargs=2, default=f.default, metavar=("MIN", "MAX"),
                                help=f"{HELP[f.name]} (default: {f.default[0]:g} {f.default[1]:g})")
        else:
            kind = {"int": int, "float": float}[f.type]
            parser.add_argument(flag, type=kind, default=f.default, help=f"{HELP[f.name]} (default: {f.default})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    return parser


def parse_args(argv=None) -> tuple[SynthConfig, bool]:
    """(the corpus settings, whether to show progress); a value SynthConfig refuses exits 2 with its message."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    progress = not args.pop("no_progress")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    if Path(values["out"]).exists() and not Path(values["out"]).is_dir():
        fail(parser, f"--out {values['out']} is a file; give a folder (it is created when missing)")
    try:
        return SynthConfig(**values), progress
    except ValueError as err:
        fail(parser, str(err))


def main(argv=None) -> None:
    cfg, progress = parse_args(argv)
    manifest = generate(cfg, progress=progress)
    print(json.dumps(manifest["splits"], indent=1))
    print(f"wrote {manifest['config']['out']} in {manifest['seconds']} s")


if __name__ == "__main__":
    main()
