"""VideoMamba as a feature extractor (the most asked-for missing piece of the official repo).

Python::

    fx = VideoFeatureExtractor("videomamba_middle", checkpoint="videomamba_m16_25M_f8_res224.pth")
    feat = fx.encode_video("clip.mp4")                           # (D,) pooled: pool_norm(cls + token mean)
    feat, tokens = fx.encode_video(data_bytes, return_tokens=True)   # tokens: (T'*N, D), cls removed

CLI::

    python -m encoders.extract INPUT --model videomamba_middle --checkpoint CKPT --out DIR|FILE.npz|FILE.safetensors
        [--tokens] [--num-frames 8] [--size 224] [--per-frame]

    python -m encoders.extract INPUT --format parquet --model-path JOINT_MODEL --out FILE.parquet [--window 8 --stride 4]

INPUT is a video/image file or a folder (searched recursively). ``--out DIR`` writes one ``.npy`` per
input (``<relative path>.npy``, plus ``.tokens.npy`` with ``--tokens``); a ``.npz``/``.safetensors`` path
writes one file keyed by relative path. Frames use the official test-time sampling (interval middles,
bicubic resize, ImageNet normalization). Bad files are skipped and listed at the end.

With ``--format parquet --model-path JOINT_MODEL`` it writes the import format instead (``encoders.vector_table``:
one row per time window, as the service's ingestion cuts and embeds it, with the model's fingerprint), ready for
``python -m service import FILE.parquet``.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from encoders.checkpoint import CheckpointError, load_checkpoint
from encoders.heap import retain_freed_memory
from encoders.registry import create_model, list_models
from media import IMAGE_EXTENSIONS, VideoDecodeError, VideoSource, load_video

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".gif")


class VideoFeatureExtractor:
    """A VideoMamba built from the registry (optionally loaded from a checkpoint) in eval mode."""

    def __init__(self, model: str = "videomamba_middle", checkpoint: str | None = None, num_frames: int = 8,
                 size: int = 224, device: str | torch.device | None = None, per_frame: bool = False,
                 **model_overrides):
        self.num_frames, self.size, self.per_frame = num_frames, size, per_frame
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = create_model(model, num_frames=num_frames, img_size=size, **model_overrides)
        if checkpoint:
            skipped = load_checkpoint(self.model, checkpoint, new_heads=("clip_decoder", "pool_norm"))
            if skipped["missing"]:
                warnings.warn(f"{checkpoint}: kept fresh initialisation for {len(skipped['missing'])} keys "
                              f"(e.g. {skipped['missing'][0]})")
        self.model.eval().to(self.device)

    @property
    def dim(self) -> int:
        return self.model.embed_dim

    @torch.inference_mode()
    def encode_tensor(self, x: torch.Tensor, return_tokens: bool = False):
        """x: (B, T, 3, H, W) or (T, 3, H, W), normalized -> pooled (B, D) (or (B, T', D) with per_frame),
        and tokens (B, T'*N, D) when asked. An unbatched input gives unbatched outputs."""
        if x.dim() not in (4, 5):
            raise ValueError(f"expected (B, T, 3, H, W) or (T, 3, H, W), got shape {tuple(x.shape)}")
        single = x.dim() == 4
        x = (x[None] if single else x).to(self.device, torch.float32).permute(0, 2, 1, 3, 4)
        tokens, pooled, _ = self.model(x, keep_temporal=self.per_frame)
        pooled = pooled if self.per_frame else pooled[:, 0]
        out = (pooled, tokens) if return_tokens else (pooled,)
        out = tuple(o[0] if single else o for o in out)
        return out if return_tokens else out[0]

    def encode_video(self, src: VideoSource, return_tokens: bool = False):
        """A path, bytes or binary file-like -> pooled (D,) (and tokens (T'*N, D)); raises VideoDecodeError."""
        x = load_video(src, num_frames=self.num_frames, sample="middle", size=self.size)
        return self.encode_tensor(x, return_tokens)


def find_inputs(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"input {root} does not exist (give a video/image file or a folder of them)")
    exts = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def _save(out: Path, features: dict[str, np.ndarray]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(out, **features)
    else:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in features.items()}, str(out))


def write_import_format(inputs: list[Path], model_path: str, out: Path, window: float, stride: float,
                        device: str | None) -> tuple[int, list[tuple[Path, str]]]:
    """Window vectors of every input into one Parquet file of the import format; (files written, bad files)."""
    from encoders.vector_table import video_table, write_tables
    from encoders.video_text import load_embedder

    embedder = load_embedder(model_path, device=device or "cpu")
    tables, bad = [], []
    for path, emb in embedder.embed_videos(inputs, window, stride):  # one decoding pass a file, batches across files
        if isinstance(emb, Exception):
            bad.append((path, emb.reason if isinstance(emb, VideoDecodeError) else str(emb)))
            continue
        tables.append(video_table(str(path.resolve()), emb.spans, emb.vectors, emb.duration, path.stem))
    if tables:
        write_tables(out, tables, embedder.fingerprint)
    return len(tables), bad


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m encoders.extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="a video/image file or a folder of them (searched recursively)")
    parser.add_argument("--model", default="videomamba_middle", choices=list_models(),
                        help="registered VideoMamba size (default: videomamba_middle)")
    parser.add_argument("--checkpoint", default=None, help="official or project checkpoint (default: none, random "
                        "weights)")
    parser.add_argument("--out", type=Path, required=True,
                        help="a folder (one .npy per input) or one .npz/.safetensors file (required)")
    parser.add_argument("--tokens", action="store_true", help="also save the patch tokens (T'*N, D)")
    parser.add_argument("--per-frame", action="store_true", help="pooled features per frame (T', D)")
    parser.add_argument("--num-frames", type=int, default=8, help="frames per input, middle sampling (default: 8)")
    parser.add_argument("--size", type=int, default=224, help="frame side after resizing (default: 224)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.add_argument("--format", choices=["features", "parquet"], default="features",
                        help="features: VideoMamba features (.npy/.npz/.safetensors); parquet: the import format of a "
                             "joint model's window vectors (needs --model-path) (default: features)")
    parser.add_argument("--model-path", default=None, help="a joint video-text model (with --format parquet)")
    parser.add_argument("--window", type=float, default=8.0, help="window length in seconds (with --format parquet; "
                        "default: 8)")
    parser.add_argument("--stride", type=float, default=4.0, help="window stride in seconds (with --format parquet; "
                        "default: 4)")
    return parser


def main(argv=None) -> int:
    """0 when every input was extracted, or some were skipped and listed; exit status 2 and the reason when the input,
    the checkpoint or every file is unusable."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_frames < 1 or args.size < 1:
        parser.error(f"--num-frames and --size must be >= 1, got {args.num_frames} and {args.size}")
    retain_freed_memory()
    try:
        inputs = find_inputs(args.input)
        if not inputs:
            raise FileNotFoundError(f"no videos or images under {args.input} (suffixes: "
                                    f"{' '.join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)})")
        if args.format == "parquet":
            if not args.model_path or args.out.suffix != ".parquet":
                parser.error("--format parquet needs --model-path and --out FILE.parquet")
            done, bad = write_import_format(inputs, args.model_path, args.out, args.window, args.stride, args.device)
        else:
            fx = VideoFeatureExtractor(args.model, args.checkpoint, args.num_frames, args.size, args.device,
                                       args.per_frame)
    except (CheckpointError, FileNotFoundError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    if args.format == "parquet":
        if not done:
            parser.exit(2, f"{parser.prog}: error: none of the {len(inputs)} file(s) under {args.input} could be "
                           f"decoded, e.g. {bad[0][0]}: {bad[0][1]}\n")
        print(f"wrote the window vectors of {done} of {len(inputs)} file(s) -> {args.out}")
        for path, reason in bad:
            print(f"  skipped {path}: {reason}", file=sys.stderr)
        return 0
    bad = extract(fx, inputs, args)
    if len(bad) == len(inputs):
        parser.exit(2, f"{parser.prog}: error: none of the {len(inputs)} file(s) under {args.input} could be decoded, "
                       f"e.g. {bad[0][0]}: {bad[0][1]}\n")
    print(f"extracted {len(inputs) - len(bad)} of {len(inputs)} file(s) with {args.model} (dim {fx.dim}) -> "
          f"{args.out}")
    if bad:
        print(f"skipped {len(bad)} bad file(s):", file=sys.stderr)
        for path, reason in bad:
            print(f"  {path}: {reason}", file=sys.stderr)
    return 0


def extract(fx: VideoFeatureExtractor, inputs: list[Path], args: argparse.Namespace) -> list[tuple[Path, str]]:
    """Write the features of every input as `args` says; returns the (path, reason) of the undecodable ones."""
    from tqdm import tqdm

    base = args.input if args.input.is_dir() else args.input.parent
    single_file = args.out.suffix in (".npz", ".safetensors")
    collected: dict[str, np.ndarray] = {}
    bad: list[tuple[Path, str]] = []
    for path in tqdm(inputs, desc="extracting", unit="video", disable=args.no_progress):
        try:
            result = fx.encode_video(path, return_tokens=args.tokens)
        except VideoDecodeError as exc:
            bad.append((path, exc.reason))
            continue
        pooled, tokens = result if args.tokens else (result, None)
        name = path.relative_to(base).as_posix()
        arrays = {name: pooled.cpu().numpy()}
        if tokens is not None:
            arrays[f"{name}.tokens"] = tokens.cpu().numpy()
        if single_file:
            collected.update(arrays)
        else:
            for key, value in arrays.items():
                target = args.out / f"{key}.npy"
                target.parent.mkdir(parents=True, exist_ok=True)
                np.save(target, value)
    if single_file and collected:
        _save(args.out, collected)
    return bad


if __name__ == "__main__":
    sys.exit(main())
