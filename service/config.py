"""Service settings: one dataclass, filled from flags, then `VMR_*` environment variables, then defaults."""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from index import IndexConfig

ENV_PREFIX = "VMR_"
API_KEY = re.compile(r"[!-~]{8,}")  # what an HTTP header carries unchanged: no spaces, nothing to strip or decode


@dataclass
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data/service")
    media_root: Path | None = None  # default: <data_dir>/media; POST /videos paths must lie inside it
    model_path: str | None = None  # a VideoTextModel directory (save_pretrained); None: the embedded default
    api_key: str | None = None  # protects every write endpoint; None: writes open (only allowed on loopback)
    protect_reads: bool = False  # also require the key for reads
    embedded_default: bool = False  # generate and index the synthetic demo library when the data dir is empty
    # bounds on requests, checked before the work they would cost (docs/security.md)
    max_upload_mb: float = 200.0  # a multipart body (an upload)
    max_json_mb: float = 4.0  # any other body
    max_k: int = 100
    max_query_chars: int = 512
    max_moments_per_video: int = 10
    max_page_depth: int = 1000  # the deepest result a page token may start at
    max_video_seconds: float = 3 * 3600.0
    max_frame_pixels: int = 4096 * 2160  # width x height of a video's frames or an image, read before decoding
    max_video_frames: int = 1_000_000
    max_texts_per_request: int = 1000
    max_concurrent_uploads: int = 2  # requests carrying a file, per route, at once; more answer 503
    max_concurrent_requests: int = 256  # other requests, per route, at once; more answer 503
    header_timeout_s: float = 10.0  # a connection that has not sent a whole request head by then is closed
    body_timeout_s: float = 30.0  # a body must arrive within this, plus a second for every 16 KiB received
    # how videos are cut and embedded
    segment_window: float = 8.0
    segment_stride: float = 4.0
    num_frames: int = 0  # 0: what the model was built for
    frame_size: int = 0  # 0: what the model was built for
    max_text_tokens: int = 0  # 0: the model's max_txt_len
    rerank_candidates: int = 8
    thumbnail_size: int = 256  # longer side of the thumbnails made at ingestion, pixels
    # text micro-batching through the encoder
    micro_batching: bool = True
    batch_size: int = 32
    batch_wait_ms: float = 3.0
    queue_size: int = 256
    job_queue_size: int = 1000
    checkpoint_interval_s: float = 10.0
    index: IndexConfig = field(default_factory=IndexConfig)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.media_root = Path(self.media_root) if self.media_root else self.data_dir / "media"
        if self.segment_stride > self.segment_window:
            raise ValueError(f"segment_stride ({self.segment_stride}) must not exceed segment_window "
                             f"({self.segment_window})")
        if self.api_key is None and not _is_loopback(self.host):
            raise ValueError(f"serving on {self.host} (not loopback) needs an API key: pass --api-key or set "
                             f"{ENV_PREFIX}API_KEY")
        if self.api_key is not None and not API_KEY.fullmatch(self.api_key):
            raise ValueError("the API key must be at least 8 printable ASCII characters without spaces (for "
                             "instance: openssl rand -hex 32)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_mb * 1024 * 1024)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def _scalar_fields():
    return [f for f in fields(ServiceConfig) if f.name != "index"]


def _field_type(f) -> type:
    default = f.default
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, (int, float)):
        return type(default)
    return str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Video-text retrieval service. Every flag can also be set as an environment variable "
                    f"{ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}PORT=9000). With no model path and no data, it builds "
                    "and serves the embedded synthetic demo library.")
    for f in _scalar_fields():
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_field_type(f), default=None,
                            help=f"(env {ENV_PREFIX}{f.name.upper()}, default {f.default!r})"
                            if not isinstance(f.default, Path) else f"(env {ENV_PREFIX}{f.name.upper()})")
    parser.add_argument("--index-kind", default=None, choices=["auto", "flat", "ivfpq", "hnsw"],
                        help=f"FAISS structure (env {ENV_PREFIX}INDEX_KIND, default auto)")
    return parser


def config_from_args(argv: list[str] | None = None, environ: dict | None = None) -> ServiceConfig:
    """Flags win over `VMR_*` variables, which win over the defaults."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    values = {}
    for f in _scalar_fields():
        value = getattr(args, f.name)
        if value is None and (raw := environ.get(ENV_PREFIX + f.name.upper())) not in (None, ""):
            try:
                value = _field_type(f)(raw)
            except (ValueError, argparse.ArgumentTypeError) as err:
                raise ValueError(f"environment variable {ENV_PREFIX}{f.name.upper()}={raw!r}: {err}") from None
        if value is not None:
            values[f.name] = value
    kind = args.index_kind or environ.get(ENV_PREFIX + "INDEX_KIND") or "auto"
    if "model_path" not in values:
        values.setdefault("embedded_default", True)
    return ServiceConfig(index=IndexConfig(kind=kind), **values)
