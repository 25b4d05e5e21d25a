"""index layer: a library of videos as time segments with vectors, behind one contract (`Library`): FAISS over
SQLite embedded (`FaissLibrary`); searches over any backend in `index.search`."""
from index.backend import Library
from index.faiss_index import IndexConfig, VectorIndex, search_threads, set_search_threads
from index.faiss_library import FaissLibrary
from index.filters import Filter, parse_filter
from index.records import NewVideo, Segment, TextHit, TextRecord, VideoHit, VideoRecord, check_fields, check_title

__all__ = ["Library", "IndexConfig", "VectorIndex", "search_threads", "set_search_threads", "FaissLibrary", "Filter",
           "parse_filter", "NewVideo", "Segment", "TextHit", "TextRecord", "VideoHit", "VideoRecord", "check_fields",
           "check_title"]
