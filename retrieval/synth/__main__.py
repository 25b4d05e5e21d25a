"""``python -m retrieval.synth --out DIR [--seed 0 --size 64 --fps 8 --frames 16 --webvid 2000 ...]``"""
from __future__ import annotations

import argparse
import dataclasses
import json

from retrieval.synth.writer import SynthConfig, generate


def parse_args(argv=None) -> SynthConfig:
    parser = argparse.ArgumentParser(prog="python -m retrieval.synth", description=__doc__)
    for f in dataclasses.fields(SynthConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "out":
            parser.add_argument(flag, required=True, help="output folder (data root)")
        elif f.type.startswith("tuple"):
            parser.add_argument(flag, type=float, nargs=2, default=f.default, metavar=("MIN", "MAX"))
        else:
            kind = {"int": int, "float": float}[f.type]
            parser.add_argument(flag, type=kind, default=f.default, help=f"default {f.default}")
    args = parser.parse_args(argv)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items()}
    return SynthConfig(**values)


def main(argv=None) -> None:
    manifest = generate(parse_args(argv))
    print(json.dumps(manifest["splits"], indent=1))
    print(f"wrote {manifest['config']['out']} in {manifest['seconds']} s")


if __name__ == "__main__":
    main()
