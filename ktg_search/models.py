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
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

SIZES = (16, 32, 64)
GENERATOR_WIDTHS = {"small": 16, "medium": 32, "large": 64}
NUM_TAPS = 4


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
        for cin, cout in zip(widths[:-1], widths[1:]):
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


class SNDiscriminator(nn.Module):
    """Images [B, C, S, S] -> logits [B, num_outputs]; spectral norm on every layer."""

    def __init__(self, image_size: int, channels: int, num_outputs: int,
                 ndf: int = 64) -> None:
        super().__init__()
        _check_size(image_size)
        layers, cin = [], channels
        for cout in _down_widths(image_size, ndf):
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear(cin * 16, num_outputs))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


class BNDiscriminator(nn.Module):
    """The DCGAN discriminator with batch norm and no spectral norm (baseline)."""

    def __init__(self, image_size: int, channels: int, num_outputs: int,
                 ndf: int = 64) -> None:
        super().__init__()
        _check_size(image_size)
        layers, cin = [], channels
        for i, cout in enumerate(_down_widths(image_size, ndf)):
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0))
            if i > 0:  # DCGAN: no batch norm on the first layer
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin * 16, num_outputs)
        self.apply(_dcgan_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


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
        for m, f in zip(mods, flags):
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
