"""Generator and discriminator networks.

Generators are DCGAN-style stacks of up-sampling blocks (ConvTranspose + BN + ReLU). Every
generator, whatever its output size, has exactly four hidden blocks, so that the paper's
"layers 2 and 3" (feature_in) and "layers 3 and 4" (feature_out) exist at 16, 32 and 64
px; `forward` returns the image and the four block outputs (the feature taps):

    64 px: z -> 4 -> 8 -> 16 -> 32 -> ConvT to 64 (exactly the DCGAN of the paper)
    32 px: z -> 4 -> 8 -> 16 -> 32 -> 3x3 conv to the image
    16 px: z -> 2 -> 4 ->  8 -> 16 -> 3x3 conv to the image

The discriminator has k+1 outputs (k "made by G_i" classes, then "real") and spectral
normalization instead of batch norm; `BNDiscriminator` is the plain batch-norm baseline.
Kinds (registry names): `sn` / `bn` = DCGAN's 2-4 stride-2 convs (the paper's D);
`sn-cnn` / `bn-cnn` = SN-GAN's standard CNN (`CNNDiscriminator`), the embedded-scale
recipe's D; `sn-resnet` = SN-GAN's ResNet D. A kind's name starts with its normalisation.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from ..data.imagedata import SIZES

# the side of each tap's square map (the four block outputs), by image size
TAP_SIDES = {16: (2, 4, 8, 16), 32: (4, 8, 16, 32), 64: (4, 8, 16, 32)}


def _check_size(image_size: int) -> None:
    if image_size not in SIZES:
        raise ValueError(f"The value of `image_size` is {image_size}, but must be one of "
                         f"{', '.join(map(str, SIZES))}")


class DCGANGenerator(nn.Module):
    """z [B, nz] -> (image [B, C, S, S] in [-1, 1], taps: 4 x [B, C_m, H_m, W_m])."""

    def __init__(self, image_size: int = 32, channels: int = 3, nz: int = 100,
                 ngf: int = 64) -> None:
        super().__init__()
        _check_size(image_size)
        self.image_size, self.channels, self.nz, self.ngf = image_size, channels, nz, ngf
        widths = [ngf * 8, ngf * 4, ngf * 2, ngf]
        first_kernel = 2 if image_size == 16 else 4
        blocks = [self._block(nz, widths[0], first_kernel, 1, 0)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            blocks.append(self._block(cin, cout, 4, 2, 1))
        self.blocks = nn.ModuleList(blocks)
        if image_size == 64:
            self.to_image = nn.ConvTranspose2d(ngf, channels, 4, 2, 1, bias=False)
        else:
            self.to_image = nn.Conv2d(ngf, channels, 3, 1, 1, bias=False)
        self.apply(_dcgan_init)

    @staticmethod
    def _block(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
        return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, s, p, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, z: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = z.view(z.shape[0], self.nz, 1, 1)
        taps = []
        for block in self.blocks:
            h = block(h)
            taps.append(h)
        return torch.tanh(self.to_image(h)), taps


def dcgan_factory(ngf: int) -> Callable[..., DCGANGenerator]:
    """A generator constructor of fixed base width, registered under `dcgan-<width>`."""
    def build(image_size: int, channels: int, nz: int = 100) -> DCGANGenerator:
        return DCGANGenerator(image_size=image_size, channels=channels, nz=nz, ngf=ngf)
    build.__name__ = f"dcgan_ngf{ngf}"
    build.__doc__ = f"DCGAN generator with base width {ngf} (16/32/64 px output)."
    return build


def _down_widths(image_size: int, ndf: int) -> list[int]:
    # stride-2 convs from image_size down to 4x4: 16 px -> 2 convs, 32 -> 3, 64 -> 4
    n = {16: 2, 32: 3, 64: 4}[image_size]
    return [ndf * 2 ** i for i in range(n)]


class DCGANDiscriminator(nn.Module):
    """DCGAN's discriminator, the paper's D: a conv4x4 s2 per halving of the image down to
    4x4 (2-4 convs), LeakyReLU 0.2, a linear head; images [B, C, S, S] -> logits
    [B, num_outputs]. `norm="sn"`: spectral norm on every layer, torch's default init (the
    method's D); `norm="bn"`: batch norm after every conv but the first (DCGAN), no
    spectral norm, DCGAN's init (the baseline)."""

    def __init__(self, image_size: int, channels: int, num_outputs: int,
                 ndf: int = 64, norm: str = "sn") -> None:
        super().__init__()
        _check_size(image_size)
        wrap = _sn_or_plain(norm)
        layers, cin = [], channels
        for i, cout in enumerate(_down_widths(image_size, ndf)):
            # a conv followed by batch norm needs no bias: BN removes it again
            layers.append(wrap(nn.Conv2d(cin, cout, 4, 2, 1, bias=norm == "sn" or i == 0)))
            if norm == "bn" and i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = wrap(nn.Linear(cin * 16, num_outputs))
        if norm == "bn":
            self.apply(_dcgan_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


class SNDiscriminator(DCGANDiscriminator):
    """The `sn` kind: DCGAN's D with spectral norm on every layer."""

    def __init__(self, image_size: int, channels: int, num_outputs: int, ndf: int = 64):
        super().__init__(image_size, channels, num_outputs, ndf, norm="sn")


class BNDiscriminator(DCGANDiscriminator):
    """The `bn` kind: DCGAN's D with batch norm and no spectral norm (baseline)."""

    def __init__(self, image_size: int, channels: int, num_outputs: int, ndf: int = 64):
        super().__init__(image_size, channels, num_outputs, ndf, norm="bn")


def _sn_or_plain(norm: str) -> Callable[[nn.Module], nn.Module]:
    if norm not in ("sn", "bn"):
        raise ValueError(f"The value of `norm` is {norm!r}, but must be one of sn, bn")
    return spectral_norm if norm == "sn" else (lambda m: m)


class CNNDiscriminator(nn.Module):
    """SN-GAN's "standard CNN" discriminator (Miyato et al. 2018, Table 3) at 16-64 px.

    conv3x3 s1 to `ndf`, then per halving of the image a conv4x4 s2 that doubles the width
    and a conv3x3 s1 at it, LeakyReLU 0.1, a linear head on the 4x4 map; at 16 px with
    ndf 32: 32 -> 64 (8x8) -> 64 -> 128 (4x4) -> 128 -> linear. Why: the 2-conv SN D has
    too little capacity for k + 1 classes under spectral norm (k = 3 learned 2-3x slower
    than k = 1, issue 10); this deeper D closed most of that gap on digits (README).
    `norm="sn"`: spectral norm on every layer (the method's D); `norm="bn"`: the same
    layers with batch norm after every conv but the first and no spectral norm (the
    "DCGAN without SN" baseline at the same architecture).
    """

    def __init__(self, image_size: int, channels: int, num_outputs: int, ndf: int = 32,
                 norm: str = "sn") -> None:
        super().__init__()
        _check_size(image_size)
        wrap = _sn_or_plain(norm)
        widths = [ndf * 2 ** i for i in range(len(_down_widths(image_size, ndf)) + 1)]
        convs = [(channels, widths[0], 3, 1, 1)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            convs += [(cin, cout, 4, 2, 1), (cout, cout, 3, 1, 1)]
        layers = []
        for i, (cin, cout, k, s, p) in enumerate(convs):
            layers.append(wrap(nn.Conv2d(cin, cout, k, s, p, bias=norm == "sn" or i == 0)))
            if norm == "bn" and i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.1, True))
        self.features = nn.Sequential(*layers)
        self.head = wrap(nn.Linear(widths[-1] * 16, num_outputs))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


class _ResBlockD(nn.Module):
    """SN-GAN's discriminator ResBlock; `first` is its "optimized" input block (no ReLU
    before the first conv, shortcut pooled before its 1x1 conv)."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.c1 = spectral_norm(nn.Conv2d(cin, cout, 3, 1, 1))
        self.c2 = spectral_norm(nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip = spectral_norm(nn.Conv2d(cin, cout, 1)) if cin != cout or down else None

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else torch.relu(x)
        h = self.c2(torch.relu(self.c1(h)))
        s = x
        if self.first:
            s = self.skip(nn.functional.avg_pool2d(s, 2))
        elif self.skip is not None:
            s = self.skip(s)
            s = nn.functional.avg_pool2d(s, 2) if self.down else s
        return (nn.functional.avg_pool2d(h, 2) if self.down else h) + s


class ResNetDiscriminator(nn.Module):
    """SN-GAN's ResNet discriminator at 16-64 px: blocks of width `ndf` halving the image
    down to 4x4, one more block, ReLU, global sum pooling, a spectral-norm linear head."""

    def __init__(self, image_size: int, channels: int, num_outputs: int,
                 ndf: int = 64) -> None:
        super().__init__()
        _check_size(image_size)
        n_down = len(_down_widths(image_size, ndf))
        blocks = [_ResBlockD(channels, ndf, True, True)]
        blocks += [_ResBlockD(ndf, ndf, True, False) for _ in range(n_down - 1)]
        blocks.append(_ResBlockD(ndf, ndf, False, False))
        self.blocks = nn.Sequential(*blocks)
        self.head = spectral_norm(nn.Linear(ndf, num_outputs))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.blocks(x)).sum(dim=(2, 3)))


def cnn_discriminator(norm: str) -> Callable[..., CNNDiscriminator]:
    """The standard-CNN D with one normalisation, registered as `<norm>-cnn`."""
    def build(image_size: int, channels: int, num_outputs: int,
              ndf: int = 32) -> CNNDiscriminator:
        return CNNDiscriminator(image_size, channels, num_outputs, ndf, norm)
    build.__name__ = f"{norm}_cnn_discriminator"
    return build


def _spectral_norm_modules(module: nn.Module) -> list[nn.Module]:
    """Modules whose weight goes through `spectral_norm` (hook or parametrization)."""
    return [m for m in module.modules()
            if hasattr(m, "weight_u") or type(m).__name__ == "_SpectralNorm"]


@contextlib.contextmanager
def same_sigma(module: nn.Module) -> Iterator[None]:
    """Forward calls inside reuse the current u, v: no further power iteration.

    Spectral norm only looks at its module's `training` flag; outside this block the
    flags are back as they were. Nothing else of an SN discriminator depends on it.
    """
    mods = _spectral_norm_modules(module)
    flags = [m.training for m in mods]
    for m in mods:
        m.training = False
    try:
        yield
    finally:
        for m, f in zip(mods, flags, strict=True):
            m.training = f


def _dcgan_init(m: nn.Module) -> None:
    # DCGAN's N(0, 0.02) weights; BN scale N(1, 0.02)
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
