"""index layer: FAISS vector caches over an SQLite library (`VideoStore`)."""
from index.faiss_index import IndexConfig, VectorIndex
from index.metadata import Segment, TextRecord, VideoRecord
from index.store import TextHit, VideoHit, VideoStore

__all__ = ["IndexConfig", "VectorIndex", "VideoStore", "VideoHit", "TextHit", "VideoRecord", "TextRecord",
           "Segment"]
