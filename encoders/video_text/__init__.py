"""The joint video-text model: its config, the model, its tokenization, and how it is built, saved and loaded."""
from encoders.video_text.config import VideoTextConfig, official_config
from encoders.video_text.embedder import Embedder, VideoEmbedding, load_embedder, pool_segments, set_encoder_threads
from encoders.video_text.model import VideoTextModel
from encoders.video_text.pretrained import (DEMO_MODEL_ENV, build_video_text_model, demo_model_path,
                                            load_video_text_model, save_pretrained)
from encoders.video_text.tokenize import Tokenize, make_tokenize, pre_text

__all__ = ["VideoTextConfig", "official_config", "Embedder", "VideoEmbedding", "load_embedder", "pool_segments",
           "set_encoder_threads", "VideoTextModel", "DEMO_MODEL_ENV", "build_video_text_model", "demo_model_path",
           "load_video_text_model", "save_pretrained", "Tokenize", "make_tokenize", "pre_text"]
