"""`python -m service reindex [--drop-missing] [service flags]`: re-embed a library with the configured model.

Every video is embedded again from its file (through the ingestion code: same windows, thumbnails, fields, title,
id and content hash) and every caption of the text gallery from its text; then the model's fingerprint is recorded
with the library, so that the service starts with that model. Run it with the service stopped (the data dir is
locked) and the flags the service runs with (--data-dir, --model-path, --segment-window, ...). A video whose file is
gone or can no longer be decoded is listed and kept, and the fingerprint is not recorded (the service refuses to
start until it is); --drop-missing deletes those videos instead. An interrupted reindex is simply run again.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from media import VideoDecodeError
from service import ingest
from service.config import config_from_args
from service.errors import ServiceError
from service.state import REINDEX_META, build_state, record_model, resolve_model_path
from service.uploads import probe

PAGE = 100


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m service reindex", description=__doc__.split("\n\n")[0],
                                     epilog="Every other flag is the service's: see python -m service --help.")
    parser.add_argument("--drop-missing", action="store_true",
                        help="delete the videos whose file is gone or undecodable instead of stopping at them")
    args, rest = parser.parse_known_args(argv)
    try:
        config = config_from_args(rest)
        state = build_state(config, check=False)
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m service reindex: {err}", file=sys.stderr)
        return 2
    library, embedder = state.library, state.embedder
    try:
        library.set_meta(REINDEX_META, embedder.fingerprint)
        unreadable = _videos(state)
        texts = _texts(state)
        if unreadable and args.drop_missing:
            for video_id, _ in unreadable:
                ingest.delete_video(state, video_id)
            print(f"deleted {len(unreadable)} videos whose file is gone or undecodable")
        elif unreadable:
            print(f"{len(unreadable)} videos could not be re-embedded (listed above); the service will not start "
                  "with this model until they are: restore their files and run reindex again, or run it with "
                  "--drop-missing to delete them", file=sys.stderr)
            return 1
        record_model(library, embedder.fingerprint, resolve_model_path(config))
        library.set_meta(REINDEX_META, "")
        print(f"re-embedded {library.num_videos()} videos and {texts} captions; model fingerprint "
              f"{embedder.fingerprint}")
        return 0
    finally:
        library.close()


def _videos(state) -> list[tuple[int, str]]:
    """Re-embed every video from its file; (id, why) of those that could not be."""
    unreadable, offset = [], 0
    while True:
        page, total = state.library.list_videos(None, offset, PAGE)
        for record in page:
            name = f"video {record.id} ({Path(record.path).name})"
            try:
                if not Path(record.path).is_file():
                    raise FileNotFoundError("its file is gone")
                probe(Path(record.path), state.config, name)
                ingest.store(state, Path(record.path), record.fields, record.title, record.id, record.content_hash,
                             lambda fraction: None)
            except (FileNotFoundError, ServiceError, VideoDecodeError) as err:
                why = getattr(err, "message", None) or getattr(err, "reason", None) or str(err)
                unreadable.append((record.id, why))
                print(f"{name}: {why}", file=sys.stderr)
        offset += len(page)
        print(f"videos: {offset}/{total}")
        if not page or offset >= total:
            return unreadable


def _texts(state) -> int:
    """Re-embed every caption from its text; how many."""
    done = 0
    while page := state.library.list_texts(done, PAGE):
        state.library.replace_text_vectors([t.id for t in page], state.embedder.embed_texts([t.text for t in page]))
        done += len(page)
    return done
