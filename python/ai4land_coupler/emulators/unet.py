"""A compact U-Net: three 2× poolings (tiles must be multiples of 8), BatchNorm, leaky ReLU,
optional FiLM conditioning.

* **Local operator.** BatchNorm uses its running statistics at inference, so an output pixel
  depends only on the inputs within :meth:`UNet.receptive_radius`: a tile's prediction equals the
  whole-field prediction wherever the tile holds the pixel's whole receptive field (per-sample
  normalisation such as GroupNorm would make every pixel depend on the whole tile).
* **Thread-count invariant.** No transcendental elementwise functions and 1×1 convolutions as
  matrix products, so the bits do not depend on how many ranks and threads run it.
* **FiLM** (feature-wise linear modulation, Perez et al. 2018): chosen input channels (the
  bioclimatic variables) are average-pooled to each level and turned by a small 1×1 network into
  a per-pixel scale and shift of every block's features, so the climate modulates how the
  network reads the other inputs instead of being one more input among many.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.1  # of every leaky ReLU


class MatmulConv1x1(nn.Conv2d):
    """1×1 convolution as one matrix product over the pixels (the rows of a channels-last tensor).

    The library's 1×1 convolution path changes its summation with the torch thread count, and so
    the bits; the matrix product splits the pixels among the threads, not the channel sums, so its
    output is the same for any thread count (``tests/test_determinism.py``). The weights are those
    of an ``nn.Conv2d``. Fewer than ``MIN_COLUMNS`` outputs are padded with zero columns, so that
    the product stays a matrix-matrix one.
    """

    MIN_COLUMNS = 8

    def __init__(self, c_in: int, c_out: int, bias: bool = True):
        super().__init__(c_in, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """``shift`` (C_out): added to the bias (in the same pass)."""
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view when x is channels-last
        weight, bias = self.weight.view(self.out_channels, c).t(), self.bias
        if shift is not None:
            bias = shift if bias is None else bias + shift
        if self.out_channels < self.MIN_COLUMNS:  # zero columns: a matrix-vector product may split the sums
            weight = F.pad(weight, (0, self.MIN_COLUMNS - self.out_channels))
            bias = None if bias is None else F.pad(bias, (0, self.MIN_COLUMNS - self.out_channels))
        y = torch.mm(rows, weight) if bias is None else torch.addmm(bias, rows, weight)
        return y[:, :self.out_channels].reshape(b, h, w, -1).permute(0, 3, 1, 2)


class FiLM(nn.Module):
    """Per-pixel scale (1 + γ) and shift β of ``channels`` features from the conditioning fields."""

    def __init__(self, cond_channels: int, channels: int, hidden: int = 16):
        super().__init__()
        self.hidden = MatmulConv1x1(cond_channels, hidden)
        self.out = MatmulConv1x1(hidden, 2 * channels)
        nn.init.zeros_(self.out.weight)  # starts as the identity
        nn.init.zeros_(self.out.bias)
        self.register_buffer("identity_shift", torch.cat([torch.ones(channels), torch.zeros(channels)]), persistent=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        hidden = F.leaky_relu(self.hidden(cond), LEAKY_SLOPE, inplace=not self.training)
        gamma, beta = self.out(hidden, shift=self.identity_shift).chunk(2, dim=1)
        return torch.addcmul(beta, x, gamma)  # gamma holds 1 + γ

    def fused(self, x: torch.Tensor) -> bool:
        """Whether :meth:`modulated_leaky` takes oneDNN's fused matrix products for ``x``."""
        return _FUSED_LINEAR is not None and plain_cpu_inference(x) and self.out.weight.dtype == torch.float32

    def modulated_leaky(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """For inference: ``leaky_relu(self(x, cond))``. Where :meth:`fused`, three oneDNN matrix
        products over the pixels (the rows of the channels-last tensors), each finishing its output
        as it writes it: the hidden layer with its leaky ReLU, then ``x ⊙ (1 + γ)``, then ``+ β``,
        so that γ and β are never stored. Each pixel's result is its own: the same bits at any
        thread count, though not those of :meth:`forward`'s products and ``addcmul`` (≈1e-7
        relative apart)."""
        if not self.fused(x):
            return F.leaky_relu(self(x, cond), LEAKY_SLOPE, inplace=True)
        linear, linear_binary = _FUSED_LINEAR
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # views of channels-last tensors
        cond_rows = cond.permute(0, 2, 3, 1).reshape(-1, cond.shape[1])
        weight, bias = self.out.weight.view(2 * c, -1), self.out.bias
        if bias is not None and self.identity_shift is not None:
            bias = bias + self.identity_shift
        hidden = linear(cond_rows, self.hidden.weight.view(self.hidden.out_channels, -1), self.hidden.bias,
                        "leaky_relu", [LEAKY_SLOPE], "")
        scaled = linear_binary(hidden, rows, weight[:c], None if bias is None else bias[:c], "mul")
        out = linear_binary(hidden, scaled, weight[c:], None if bias is None else bias[c:], "add")
        return F.leaky_relu(out, LEAKY_SLOPE, inplace=True).view(b, h, w, c).permute(0, 3, 1, 2)

    @torch.no_grad()
    def fold_bias(self) -> None:
        """For inference only: each layer's bias (and the 1 of 1 + γ) as one more column of its
        weights, fed by one more input that is always 1: the conditioning fields then come with a
        last channel of ones (:attr:`UNet.cond_ones`), which the hidden layer passes on. Both layers
        are then plain matrix products, which write their result once instead of first filling it
        with the bias and adding the product to it (:meth:`forward`, the path off the fused one;
        :meth:`modulated_leaky` takes the biases either way); the same function to rounding."""
        hidden, out = self.hidden, self.out
        n = hidden.out_channels
        self.hidden = MatmulConv1x1(hidden.in_channels + 1, n + 1, bias=False).to(hidden.weight)
        self.hidden.weight.zero_()
        self.hidden.weight[:n, :-1] = hidden.weight
        self.hidden.weight[:n, -1, 0, 0] = hidden.bias
        self.hidden.weight[n, -1] = 1.0  # the ones, through the leaky ReLU unchanged
        self.out = MatmulConv1x1(n + 1, out.out_channels, bias=False).to(out.weight)
        self.out.weight[:, :-1] = out.weight
        self.out.weight[:, -1, 0, 0] = out.bias + self.identity_shift
        self.identity_shift = None
        for layer in (self.hidden, self.out):
            layer.train(self.training)


def plain_cpu_inference(x: torch.Tensor) -> bool:
    """Whether ``x`` is float32 on the CPU, outside autograd and autocast: where the folded network
    takes its fused passes (:class:`ConvShiftLeaky`, :meth:`FiLM.modulated_leaky`)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu"))


def _fused_convolution():
    """oneDNN's convolution with a bias and an activation applied as it writes its output (torch's
    CPU builds with mkldnn, which the inductor compiler uses), or None where torch has none."""
    try:
        return torch.ops.mkldnn._convolution_pointwise.default
    except (AttributeError, RuntimeError):
        return None


_FUSED_CONVOLUTION = _fused_convolution()


def _fused_linear():
    """oneDNN's matrix product with an activation, or a product or sum with another tensor, applied
    as it writes its output (torch's ``mkldnn::_linear_pointwise``, which its inductor compiler
    uses), as (with an activation, with another tensor); None where torch has none."""
    try:
        return torch.ops.mkldnn._linear_pointwise.default, torch.ops.mkldnn._linear_pointwise.binary
    except (AttributeError, RuntimeError):
        return None


_FUSED_LINEAR = _fused_linear()


class ConvShiftLeaky(nn.Module):
    """For inference: a convolution without bias, then ``+ shift`` per channel (what is left of a
    BatchNorm folded into it, :meth:`DoubleConv.fold_batchnorm`), then the leaky ReLU, in one pass
    over the features: oneDNN's fused convolution on the CPU in float32 without autograd, else the
    three in turn. The same bits either way, and at any thread count (``tests/test_emulators.py``);
    the fused pass saves writing and reading the features twice (the LAI forward 1.07× faster on
    2 CPU threads; the land-use one, whose second convolutions feed FiLM, within noise)."""

    def __init__(self, conv: nn.Conv2d, shift: torch.Tensor):
        super().__init__()
        self.conv = conv
        self.register_buffer("shift", shift.detach().clone().view(-1))

    def fused(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward` takes oneDNN's fused convolution for ``x``."""
        return _FUSED_CONVOLUTION is not None and plain_cpu_inference(x) and self.conv.weight.dtype == torch.float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if self.fused(x):
            return _FUSED_CONVOLUTION(x, c.weight, self.shift, list(c.padding), list(c.stride), list(c.dilation),
                                      c.groups, "leaky_relu", [LEAKY_SLOPE], "")
        return F.leaky_relu(c(x).add_(self.shift.view(1, -1, 1, 1)), LEAKY_SLOPE, inplace=True)


class DoubleConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_channels: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out)
        self.film = FiLM(cond_channels, c_out) if cond_channels else None

    @property
    def folded(self) -> bool:
        """Whether :meth:`fold_batchnorm` has run (the block is then for inference only)."""
        return isinstance(self.conv1, ConvShiftLeaky)

    @torch.no_grad()
    def fold_batchnorm(self) -> None:
        """Fold the BatchNorms (their running statistics) into the weights, for inference only: each
        one's scale into the convolution before it, its shift into a :class:`ConvShiftLeaky` with
        that convolution or, before a FiLM, into the FiLM's β (γ ⊙ (s·y + t) + β = γ ⊙ (s·y) + (β +
        t ⊙ γ), and γ, β are linear in the FiLM's hidden features). The same function to rounding;
        passes fewer over the features, and convolutions without bias, whose bits do not depend on
        the thread count."""
        for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2)):
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            shift = norm.bias - norm.running_mean * scale
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            if norm is self.norm2 and self.film is not None:
                c = shift.numel()
                out = self.film.out  # rows: the c channels of γ - 1, then the c of β
                weight = out.weight.view(2 * c, -1)
                weight[c:] += shift[:, None] * weight[:c]
                out.bias[c:] += shift * (out.bias[:c] + 1.0)
                self.norm2 = nn.Identity()
            elif norm is self.norm1:
                self.conv1, self.norm1 = ConvShiftLeaky(conv, shift), nn.Identity()
            else:
                self.conv2, self.norm2 = ConvShiftLeaky(conv, shift), nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        inplace = not self.training  # autograd keeps the unactivated tensors
        x = self.conv1(x)
        if not self.folded:  # else conv1 applies the norm's shift and the activation
            x = F.leaky_relu(self.norm1(x), LEAKY_SLOPE, inplace=inplace)
        x = self.conv2(x)
        if isinstance(self.conv2, ConvShiftLeaky):
            return x
        x = self.norm2(x)
        if self.film is not None:
            if self.folded:
                return self.film.modulated_leaky(x, cond)
            x = self.film(x, cond)
        return F.leaky_relu(x, LEAKY_SLOPE, inplace=inplace)


class UNet(nn.Module):
    """Encoder widths ``widths[0..3]``: full, 1/2, 1/4 resolution and a 1/8 bottleneck.

    ``film_channels``: indices of the input channels that condition every block through FiLM
    (they stay ordinary inputs too); empty for an unconditioned U-Net.
    """

    DOWNSAMPLING = 8

    def __init__(self, in_channels: int, out_channels: int, widths: tuple[int, ...] = (16, 32, 48, 64),
                 film_channels: tuple[int, ...] = ()):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"UNet needs 4 widths (3 levels + bottleneck), got {widths}")
        if any(not 0 <= c < in_channels for c in film_channels):
            raise ValueError(f"FiLM channels {film_channels} are not among the {in_channels} inputs")
        self.in_channels, self.out_channels, self.widths = in_channels, out_channels, tuple(widths)
        self.film_channels = tuple(int(c) for c in film_channels)
        self.cond_ones = False  # the conditioning fields carry a last channel of ones (FiLM.fold_bias)
        n_cond = len(self.film_channels)
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(DoubleConv(c, w, n_cond))
            c = w
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.merge.append(DoubleConv(2 * w, w, n_cond))
            c = w
        self.head = MatmulConv1x1(c, out_channels)

    def folded(self) -> "UNet":
        """A copy for inference, in eval mode, with every BatchNorm folded into the weights
        (:meth:`DoubleConv.fold_batchnorm`): the same function to rounding (≈1e-6 relative)."""
        model = copy.deepcopy(self).eval()
        for block in [*model.down, *model.merge]:
            block.fold_batchnorm()
            if block.film is not None:
                block.film.fold_bias()
        model.cond_ones = bool(model.film_channels)
        return model

    @classmethod
    def receptive_radius(cls) -> int:
        """Fine cells on each side of a pixel that can change its output (an upper bound).

        Each 3×3 convolution at level l reaches 2^l cells; a 2×2 pooling or transposed
        convolution at level l shifts the window by up to 2^l cells.
        """
        levels = range(4)
        convs = sum(2 * 2**level for level in levels) + sum(2 * 2**level for level in levels[:-1])
        return convs + 2 * sum(2**level for level in levels[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.DOWNSAMPLING or w % self.DOWNSAMPLING:
            raise ValueError(f"UNet input {h}x{w} is not a multiple of {self.DOWNSAMPLING}")
        cond = [None] * len(self.down)
        if self.film_channels:
            first, n = self.film_channels[0], len(self.film_channels)
            cond = [torch.ones((x.shape[0], h, w, n + self.cond_ones), dtype=x.dtype, device=x.device).permute(0, 3, 1, 2)]
            if self.film_channels == tuple(range(first, first + n)):
                cond[0][:, :n] = x.narrow(1, first, n)
            else:
                cond[0][:, :n] = x[:, list(self.film_channels)]
            for _ in range(1, len(self.down)):
                cond.append(F.avg_pool2d(cond[-1], 2))
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.max_pool2d(x, 2), cond[level])
            skips.append(x)
        x = skips.pop()
        for level, (up, merge) in zip(range(len(self.up) - 1, -1, -1), zip(self.up, self.merge)):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1), cond[level])
        return self.head(x)
