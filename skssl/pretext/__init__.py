from .rotation import RotationSSL

__all__ = ["RotationSSL"]
