"""Joint-embedding methods: contrastive, siamese and redundancy reduction."""

from .barlow_twins import BarlowTwins
from .byol import BYOL
from .dino import DINO
from .instance_discrimination import InstanceDiscriminationSSL
from .moco import MoCo
from .pirl import PIRL
from .simclr import SimCLR
from .simsiam import SimSiam
from .swav import SwAV
from .vicreg import VICReg

__all__ = ["BYOL", "BarlowTwins", "InstanceDiscriminationSSL", "MoCo", "PIRL", "SimCLR", "SimSiam", "SwAV", "VICReg", "DINO"]
