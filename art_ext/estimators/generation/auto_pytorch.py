"""PyTorch modules of :func:`art_ext.estimators.generation.build_auto_generator` (twins of ``auto_tensorflow``)."""

from __future__ import annotations

from typing import Any

from art_ext.estimators.generation.auto import GeneratorPlan, coarse_sizes

#: Initial scale and shift of the output normalisation (learnable): contrast 2 spreads the squashed samples over the
#: input range from the first step; images start darker than mid-range, as the reference generators' do.
CONTRAST, IMAGE_BRIGHTNESS = 2.0, -1.0


def build(plan: GeneratorPlan, encoding_length: int, ngf: int) -> Any:
    """The ``torch.nn.Module`` for `plan`: dense, or multi-scale convolutional in 1-D or 2-D."""
    if plan.kind == "dense":
        return _dense(plan, encoding_length, ngf)
    return _multiscale(plan, encoding_length, ngf)


def _output_norm(nn: Any, features: int, dims: int, brightness: float) -> Any:
    norm = (nn.BatchNorm1d if dims <= 1 else nn.BatchNorm2d)(features)
    nn.init.constant_(norm.weight, CONTRAST)
    nn.init.constant_(norm.bias, brightness)
    return norm


def _dense(plan: GeneratorPlan, encoding_length: int, ngf: int) -> Any:
    import math

    from torch import nn

    shape, width = plan.sample_shape, 8 * ngf
    features = math.prod(shape)

    class DenseGenerator(nn.Module):
        """Noise to every entry of a sample of shape ``sample_shape`` (two hidden layers, output normalised)."""

        sample_shape = shape

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(encoding_length, width),
                nn.BatchNorm1d(width),
                nn.LeakyReLU(0.2),
                nn.Linear(width, width),
                nn.BatchNorm1d(width),
                nn.LeakyReLU(0.2),
                nn.Linear(width, features),
                _output_norm(nn, features, 1, 0.0),
            )

        def forward(self, z):
            return self.body(z.reshape(z.shape[0], -1)).reshape((z.shape[0],) + shape)

    return DenseGenerator()


def _multiscale(plan: GeneratorPlan, encoding_length: int, ngf: int) -> Any:
    import math

    import torch.nn.functional as F
    from torch import nn

    dims, channels, spatial = len(plan.spatial), plan.channels, plan.spatial
    coarse_shape, half = coarse_sizes(spatial), max(ngf // 2, 1)
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    mode = "linear" if dims == 1 else "bilinear"
    channels_last = not plan.channels_first
    brightness = IMAGE_BRIGHTNESS if dims == 2 else 0.0

    class MultiScaleGenerator(nn.Module):
        """
        Noise to a coarse map (a quarter of each side), a block there and one at twice its size, each with a
        one-convolution head; both heads are resized (linearly) to the sample's sides, summed and normalised.
        """

        sample_shape = plan.sample_shape

        def __init__(self) -> None:
            super().__init__()
            self.project = nn.Linear(encoding_length, ngf * math.prod(coarse_shape))
            self.coarse = nn.Sequential(
                norm(ngf), nn.LeakyReLU(0.2), conv(ngf, ngf, 3, padding=1), norm(ngf), nn.LeakyReLU(0.2)
            )
            self.coarse_head = conv(ngf, channels, 3, padding=1)
            self.fine = nn.Sequential(
                nn.Upsample(scale_factor=2, mode=mode), conv(ngf, half, 3, padding=1), norm(half), nn.LeakyReLU(0.2)
            )
            self.fine_head = conv(half, channels, 3, padding=1)
            self.out = _output_norm(nn, channels, dims, brightness)

        def forward(self, z):
            n = z.shape[0]
            h = self.coarse(self.project(z.reshape(n, -1)).reshape((n, ngf) + coarse_shape))
            coarse = F.interpolate(self.coarse_head(h), size=spatial, mode=mode)
            fine = F.interpolate(self.fine_head(self.fine(h)), size=spatial, mode=mode)
            out = self.out(coarse + fine)  # channels first
            if channels_last:  # the samples' layout, made here: a move of the channel axis, never a reshape
                out = out.permute((0,) + tuple(range(2, dims + 2)) + (1,)).contiguous()
            return out

    return MultiScaleGenerator()
