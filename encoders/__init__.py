"""Models: the VideoMamba visual encoder, the BERT text/fusion encoder, the CLIP teacher and the joint model."""
from encoders.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
