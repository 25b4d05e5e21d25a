"""Procedural video-text corpus: shapes on backgrounds doing things in time, captioned from the same scene
description, written in the official annotation formats (``python -m retrieval.synth --out DIR``)."""
from retrieval.synth.writer import SynthConfig, generate

__all__ = ["SynthConfig", "generate"]
