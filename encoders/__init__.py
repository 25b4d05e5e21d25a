"""Models: the VideoMamba visual encoder, the BERT text/fusion encoder, the CLIP teacher and the joint model."""
from encoders.registry import create_model, list_models, register_model
from encoders import videomamba  # noqa: F401,E402  (registers the VideoMamba sizes)

__all__ = ["create_model", "list_models", "register_model"]
