"""Masked image modelling: hide part of an image and predict what is hidden."""

from .beit import BEiT
from .mae import MAE
from .tokenizer import VQTokenizer

__all__ = ["BEiT", "MAE", "VQTokenizer"]
