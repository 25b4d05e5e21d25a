"""The embedded default: with no configuration, a small synthetic library (retrieval.synth) indexed with the demo
model, so that `python -m service` alone answers the README's quickstart query with real results.

Short clips come from the synthetic MSR-VTT test split (their captions also fill the text gallery); a few longer
DiDeMo-style videos show segment search, and two videos of several events in order with their order-swapped twins
(the events split) show moments and "A then B". Everything is built once in the data dir and reused on later starts.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from retrieval.corpora import load_benchmark
from retrieval.synth.writer import SynthConfig, generate
from service import ingest
from service.layout import layout
from service.state import ServiceState

log = logging.getLogger(__name__)

SYNTH_COUNTS = dict(msrvtt_test=24, didemo_test=3, events_test=4)
SYNTH_LONG_SECONDS = (12.0, 16.0)


def start_default_library(state: ServiceState) -> threading.Thread | None:
    """Build the synthetic library in the background when the library is empty; progress in /healthz."""
    if state.library.num_videos():
        state.default_library["status"] = "ready"
        return None
    state.default_library["status"] = "generating"
    thread = threading.Thread(target=_build, args=(state,), name="default-library", daemon=True)
    thread.start()
    return thread


def _build(state: ServiceState) -> None:
    root = layout(state.config).demo
    try:
        if not (root / "manifest.json").exists():
            zero = {f: 0 for f in ("webvid", "cc3m", "msrvtt_train", "msvd_train", "msvd_test", "lsmdc_train",
                                   "lsmdc_test", "didemo_train", "anet_train", "anet_val")}
            generate(SynthConfig(out=str(root), didemo_seconds=SYNTH_LONG_SECONDS, workers=1, **SYNTH_COUNTS,
                                 **zero), progress=False)
        jobs = []
        for corpus in ("msrvtt", "didemo", "events"):
            bench = load_benchmark(corpus, root, "test")
            if corpus == "msrvtt" and not state.library.num_texts():
                state.library.add_texts(bench.texts, state.embedder.embed_texts(bench.texts),
                                      [{"corpus": corpus, "video": Path(bench.videos[v]).name}
                                       for v in bench.txt2vid])
            for v, path in enumerate(bench.videos):
                captions = [bench.texts[t] for t in bench.vid2txt[v]]
                fields = {"corpus": corpus, "caption": " ".join(captions)}
                jobs.append(ingest.submit(state, Path(path), fields, None, "default", Path(path).name))
        for i, job in enumerate(jobs):
            while job.status not in ("done", "failed"):
                state.default_library["status"] = f"indexing {i}/{len(jobs)}"
                threading.Event().wait(0.2)
        failed = sum(job.status == "failed" for job in jobs)
        state.default_library["status"] = "ready" if not failed else f"ready ({failed} failed)"
        log.info("embedded default library ready: %d videos", state.library.num_videos())
    except Exception as err:
        log.exception("building the embedded default library failed")
        state.default_library["status"] = f"failed: {err}"
