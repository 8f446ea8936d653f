"""Backbones: a small CNN for tiny images, ResNets with the CIFAR or ImageNet stem, or your own.

Every backbone is wrapped as a :class:`Backbone`, a sequence of stages whose
outputs can be globally pooled into embeddings. Methods that read an
intermediate stage (RotNet found intermediate features often beat the last
ones) or a dense feature map (ContrastiveCrop's heatmaps) all use this one
interface.
"""

import copy
import inspect

import torch
from torch import nn

from ._vit import VisionTransformer, vit_small, vit_tiny  # noqa: F401 (VisionTransformer: public here)


def _conv_bn_relu(c_in, c_out, stride=1):
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """Three-stage VGG-style CNN for images from 8 to ~32 pixels.

    Stage ``i`` has ``width * 2**i`` channels; stages 2 and 3 halve the
    resolution, so an 8x8 digit ends as a 2x2 map.
    """

    def __init__(self, in_channels=1, width=32):
        super().__init__()
        w = width
        self.stages = nn.ModuleList([
            nn.Sequential(*_conv_bn_relu(in_channels, w), *_conv_bn_relu(w, w)),
            nn.Sequential(*_conv_bn_relu(w, 2 * w, stride=2), *_conv_bn_relu(2 * w, 2 * w)),
            nn.Sequential(*_conv_bn_relu(2 * w, 4 * w, stride=2), *_conv_bn_relu(4 * w, 4 * w)),
        ])

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


class ResNet18CIFAR(nn.Module):
    """torchvision's ResNet-18 with the CIFAR stem: 3x3 conv, stride 1, no max-pool.

    For 32-63 px images: the stem keeps full resolution, which at 224 px
    would cost about 16 times the compute of the ImageNet stem.
    """

    def __init__(self, in_channels=3):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False),
            net.bn1,
            net.relu,
        )
        self.stages = nn.ModuleList([stem, net.layer1, net.layer2, net.layer3, net.layer4])

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


class _ImageNetResNet(nn.Module):
    """torchvision's ResNet with its ImageNet stem (7x7 conv stride 2, 3x3 max-pool stride 2)."""

    factory = None

    def __init__(self, in_channels=3):
        super().__init__()
        import torchvision.models

        net = getattr(torchvision.models, self.factory)(weights=None)
        conv = net.conv1
        if in_channels != 3:  # torchvision's initialisation of its own stem
            conv = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        stem = nn.Sequential(conv, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([stem, net.layer1, net.layer2, net.layer3, net.layer4])

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


class ResNet18(_ImageNetResNet):
    """torchvision's ResNet-18 with the ImageNet stem, for images of 64 px and more."""

    factory = "resnet18"


class ResNet50(_ImageNetResNet):
    """torchvision's ResNet-50 (bottleneck blocks, 2048 features) with the ImageNet stem."""

    factory = "resnet50"


def pool(features):
    """Feature map ``(n, c, h, w)`` or tokens ``(n, t, d)`` -> vectors ``(n, d)``."""
    if features.ndim == 4:
        return features.mean(dim=(2, 3))
    if features.ndim == 3:
        return features.mean(dim=1)
    return features.flatten(1)


class Backbone(nn.Module):
    """A network split into stages; ``forward`` returns pooled stage outputs.

    Parameters
    ----------
    network : nn.Module
        Either exposes ``stages`` (an iterable of modules applied in order) or
        is treated as a single stage mapping images to a feature map or vector.
    """

    def __init__(self, network):
        super().__init__()
        stages = getattr(network, "stages", None)
        self.stages = nn.ModuleList(stages if stages is not None else [network])

    def feature_maps(self, x, stage=-1):
        """Unpooled output of ``stage`` (index into :attr:`stages`)."""
        last = stage % len(self.stages)
        for i, module in enumerate(self.stages):
            x = module(x)
            if i == last:
                return x

    def forward(self, x, stage=-1):
        return pool(self.feature_maps(x, stage))

    def stage_dims(self, in_channels, image_size):
        """Embedding width of every stage, found with a dummy forward pass."""
        was_training = self.training
        self.eval()
        x = torch.zeros(2, in_channels, image_size[0], image_size[1])
        dims = []
        with torch.no_grad():
            for module in self.stages:
                x = module(x)
                dims.append(pool(x).shape[1])
        self.train(was_training)
        return dims


BACKBONES = {"small_cnn": SmallCNN, "resnet18_cifar": ResNet18CIFAR, "resnet18": ResNet18, "resnet50": ResNet50,
             "vit_tiny": vit_tiny, "vit_small": vit_small}


def resolve_backbone_name(spec, image_size):
    """The backbone ``"auto"`` stands for at ``image_size`` (h, w); other names pass through.

    The small CNN under 32 px, the CIFAR ResNet-18 from 32 to 63 px, the
    ImageNet-stem ResNet-18 from 64 px.
    """
    if spec != "auto":
        return spec
    side = min(image_size)
    return "small_cnn" if side < 32 else "resnet18_cifar" if side < 64 else "resnet18"


def build_backbone(spec, in_channels, image_size):
    """Resolve ``"auto"``, a name from :data:`BACKBONES`, or an ``nn.Module``.

    ``"auto"`` follows :func:`resolve_backbone_name`. A module passed by the
    user is deep-copied, so fitting never changes the estimator's parameters.
    """
    if isinstance(spec, nn.Module):
        return Backbone(copy.deepcopy(spec))
    spec = resolve_backbone_name(spec, image_size)
    if spec not in BACKBONES:
        raise ValueError(
            f"backbone must be 'auto', one of {sorted(BACKBONES)} or an nn.Module; got {spec!r}."
        )
    make = BACKBONES[spec]
    # The ViTs choose their patch size from the image size.
    sized = "image_size" in inspect.signature(make).parameters
    return Backbone(make(in_channels=in_channels, **({"image_size": tuple(image_size)} if sized else {})))
