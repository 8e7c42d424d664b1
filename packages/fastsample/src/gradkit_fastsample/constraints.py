"""Constraints on the clean sample ``x0``: what the sampler corrects towards.

A constraint gives a per-sample differentiable ``loss(x0) -> [B]`` and the clean-space correction
``direction(x0) = -grad_{x0} loss`` (``g`` in the paper). Autograd may run through cheap networks
(a VAE decoder, a feature extractor) but never through the diffusion model. ``error(x0) -> [B]`` is
the number reported in traces and benchmarks (mean squared error on the observed entries).

Every constraint takes an optional ``decoder`` (latent -> pixel, e.g. :func:`vae_decoder`): the
observation then lives in pixel space and ``g`` is obtained by backprop through the decoder only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from gradkit.errors import ArgumentTypeError, ConfigError

__all__ = [
    "Constraint",
    "Inpaint",
    "LatentInpaint",
    "SuperResolution",
    "Deblur",
    "FeatureLoss",
    "gaussian_kernel",
    "vae_decoder",
]

Decoder = Callable[[torch.Tensor], torch.Tensor]


def _check_tensor(owner: str, name: str, v: Any) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        raise ArgumentTypeError(f"{owner}: `{name}` must be a torch.Tensor, got {type(v).__name__}")
    if v.dim() != 4:
        raise ConfigError(f"{owner}: `{name}` must be 4-D [B, C, H, W], got shape {tuple(v.shape)}")
    return v


def _broadcastable(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or x == 1 for x, y in zip(a, b))


def vae_decoder(vae: Any) -> Decoder:
    """``z -> vae.decode(z / scaling_factor).sample`` for a diffusers ``AutoencoderKL``."""
    sf = float(getattr(getattr(vae, "config", None), "scaling_factor", 1.0))

    def decode(z: torch.Tensor) -> torch.Tensor:
        dt = next(vae.parameters()).dtype
        out = vae.decode(z.to(dt) / sf)
        return (out.sample if hasattr(out, "sample") else out[0]).float()

    return decode


class Constraint:
    """Base class. Subclasses implement :meth:`_loss_pixels` (per-sample loss on the decoded sample)."""

    #: name used in traces
    kind = "constraint"

    def __init__(self, decoder: Decoder | None = None) -> None:
        if decoder is not None and not callable(decoder):
            raise ArgumentTypeError(f"{type(self).__name__}: `decoder` must be callable, got {type(decoder).__name__}")
        self.decoder = decoder

    # -- to implement ---------------------------------------------------------------------------
    def _loss_pixels(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _error_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return self._loss_pixels(x)

    def validate(self, shape: tuple[int, ...]) -> None:
        """Raise :class:`ConfigError` if the constraint cannot apply to samples of ``shape`` (decoded shape when a decoder is set)."""

    # -- public ---------------------------------------------------------------------------------
    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        return self.decoder(x0) if self.decoder is not None else x0

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        """Per-sample loss ``[B]`` (differentiable)."""
        return self._loss_pixels(self.decode(x0))

    def error(self, x0: torch.Tensor) -> torch.Tensor:
        """Per-sample reported error ``[B]`` (no grad)."""
        with torch.no_grad():
            return self._error_pixels(self.decode(x0)).detach().float()

    def direction(self, x0: torch.Tensor) -> torch.Tensor:
        """``g = -grad_{x0} loss(x0)`` (autograd through the decoder / loss only; never the denoiser)."""
        with torch.enable_grad():
            xr = x0.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.loss(xr).sum(), xr)
        return -grad.detach()

    def fused_inpaint_inputs(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(y, mask)`` when ``g = mask * (y - x0)`` exactly (lets the sampler use the fused kernels)."""
        return None

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Constraint:
        for k, v in list(vars(self).items()):
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                setattr(self, k, v.to(device=device, dtype=dtype))
            elif isinstance(v, torch.Tensor):
                setattr(self, k, v.to(device=device))
        return self


class Inpaint(Constraint):
    """Known pixels: ``mask * x0 == mask * image``. ``loss = 0.5 * ||mask * (image - x0)||^2``.

    Args:
        image: ``[B or 1, C, H, W]`` observed image (values outside the mask are ignored).
        mask: ``[B or 1, C or 1, H, W]``, 1 where the pixel is known, 0 where it is to be generated
            (a bool or float tensor broadcastable to ``image``).
        decoder: optional latent -> pixel map (pixel-exact inpainting of a latent model).
    """

    kind = "inpaint"

    def __init__(self, image: torch.Tensor, mask: torch.Tensor, *, decoder: Decoder | None = None) -> None:
        super().__init__(decoder)
        image = _check_tensor("Inpaint", "image", image)
        mask = _check_tensor("Inpaint", "mask", mask)
        if not _broadcastable(tuple(mask.shape), tuple(image.shape)) and not _broadcastable(tuple(image.shape), tuple(mask.shape)):
            raise ConfigError(
                f"Inpaint: `mask` shape {tuple(mask.shape)} does not match `image` shape {tuple(image.shape)}; "
                "pass a mask of shape [B or 1, C or 1, H, W] with the image's H and W"
            )
        m = mask.to(torch.float32)
        if ((m != 0) & (m != 1)).any():
            raise ConfigError("Inpaint: `mask` must contain only 0 (unknown) and 1 (known)")
        self.mask = m
        self.image = image.float()
        self.y = self.image * self.mask

    def validate(self, shape: tuple[int, ...]) -> None:
        for name, v in (("image", self.image), ("mask", self.mask)):
            ok = len(shape) == v.dim() and all(a == b or a == 1 for a, b in zip(v.shape, shape))
            if not ok:
                space = "decoded (pixel) " if self.decoder is not None else ""
                raise ConfigError(
                    f"Inpaint: `{name}` shape {tuple(v.shape)} does not match the {space}sample shape {tuple(shape)}; "
                    "use the same C, H, W (and batch 1 or the sample batch)"
                )

    def _loss_pixels(self, x: torch.Tensor) -> torch.Tensor:
        r = self.mask * (self.y - x)
        return 0.5 * r.pow(2).flatten(1).sum(1)

    def _error_pixels(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mask.expand_as(x)
        r = m * (self.y - x)
        n = m.flatten(1).sum(1)
        return torch.where(n > 0, r.pow(2).flatten(1).sum(1) / n.clamp_min(1), torch.zeros_like(n))

    def direction(self, x0: torch.Tensor) -> torch.Tensor:
        if self.decoder is not None:
            return super().direction(x0)
        dt = torch.promote_types(x0.dtype, torch.float32)
        return (self.mask.to(dt) * (self.y.to(dt) - x0.to(dt))).expand_as(x0).contiguous()

    def fused_inpaint_inputs(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None if self.decoder is not None else (self.y, self.mask)


class LatentInpaint(Inpaint):
    """Inpainting in a VAE's latent space (the paper's Stable Diffusion setting, no decoder gradient).

    ``g = M_lat * (z_y - x0_hat)`` with ``z_y = Enc(image * mask)`` (posterior mean times the VAE's
    ``scaling_factor``) and ``M_lat = 1`` only where the whole ``f x f`` pixel block is known
    (``avg_pool(mask, f) == 1``), copied to every latent channel. Build with :meth:`from_image`.
    """

    kind = "latent_inpaint"

    def __init__(self, latent: torch.Tensor, latent_mask: torch.Tensor) -> None:
        super().__init__(latent, latent_mask)

    @classmethod
    def from_image(cls, vae: Any, image: torch.Tensor, mask: torch.Tensor) -> LatentInpaint:
        """Encode ``image * mask`` (``image`` in the VAE's range, usually ``[-1, 1]``; ``mask`` ``[B|1, 1, H, W]``)."""
        image = _check_tensor("LatentInpaint", "image", image)
        mask = _check_tensor("LatentInpaint", "mask", mask).float()
        if mask.shape[-2:] != image.shape[-2:] or mask.shape[1] != 1:
            raise ConfigError(
                f"LatentInpaint: `mask` shape {tuple(mask.shape)} must be [B or 1, 1, H, W] with the image's H, W "
                f"(image {tuple(image.shape)})"
            )
        n_down = len(getattr(vae.config, "block_out_channels", (1,))) - 1
        f = 2**n_down
        if image.shape[-1] % f or image.shape[-2] % f:
            raise ConfigError(f"LatentInpaint: image size {tuple(image.shape[-2:])} must be divisible by the VAE factor {f}")
        sf = float(getattr(vae.config, "scaling_factor", 1.0))
        dt = next(vae.parameters()).dtype
        with torch.no_grad():
            post = vae.encode((image * mask).to(dt)).latent_dist
            z = post.mean.float() * sf
        lm = (F.avg_pool2d(mask, f) >= 1.0 - 1e-6).float().expand(-1, z.shape[1], -1, -1)
        return cls(z, lm)


class _LinearOperatorConstraint(Constraint):
    """``loss = 0.5 * ||y - A(x)||^2`` for a linear operator ``A``; ``g = A^T (y - A x0)`` by autograd."""

    def __init__(self, y: torch.Tensor, decoder: Decoder | None) -> None:
        super().__init__(decoder)
        self.y = y.float()

    def A(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loss_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.y - self.A(x)).pow(2).flatten(1).sum(1)

    def _error_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return (self.y - self.A(x)).pow(2).flatten(1).mean(1)


class SuperResolution(_LinearOperatorConstraint):
    """``A(x) = avg_pool(x, factor)`` (box downsampling) must equal the low-resolution ``y``.

    Args:
        y: ``[B or 1, C, H/factor, W/factor]`` low-resolution observation.
        factor: integer downsampling factor; must divide the (decoded) sample's H and W.
    """

    kind = "super_resolution"

    def __init__(self, y: torch.Tensor, factor: int, *, decoder: Decoder | None = None) -> None:
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ConfigError(f"SuperResolution: `factor` must be a positive int, got {factor!r}")
        super().__init__(_check_tensor("SuperResolution", "y", y), decoder)
        self.factor = factor

    @classmethod
    def from_image(cls, image: torch.Tensor, factor: int, *, decoder: Decoder | None = None) -> SuperResolution:
        """Observe ``image`` (``[B, C, H, W]``) downsampled by ``factor``."""
        image = _check_tensor("SuperResolution", "image", image)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ConfigError(f"SuperResolution: `factor` must be a positive int, got {factor!r}")
        h, w = image.shape[-2:]
        if h % factor or w % factor:
            raise ConfigError(
                f"SuperResolution: scale `factor`={factor} does not divide the image size {h}x{w}; "
                "choose a factor that divides both H and W (or crop/pad the image)"
            )
        return cls(F.avg_pool2d(image.float(), factor), factor, decoder=decoder)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.factor)

    def validate(self, shape: tuple[int, ...]) -> None:
        h, w = shape[-2:]
        if h % self.factor or w % self.factor:
            raise ConfigError(
                f"SuperResolution: scale `factor`={self.factor} does not divide the sample size {h}x{w}; "
                "choose a factor that divides both H and W"
            )
        want = (shape[1], h // self.factor, w // self.factor)
        if tuple(self.y.shape[1:]) != want or self.y.shape[0] not in (1, shape[0]):
            raise ConfigError(
                f"SuperResolution: `y` shape {tuple(self.y.shape)} does not match sample shape {tuple(shape)} "
                f"downsampled by {self.factor} (expected [B or 1, {want[0]}, {want[1]}, {want[2]}])"
            )


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> torch.Tensor:
    """A normalised ``[size, size]`` Gaussian blur kernel (``size`` odd)."""
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ConfigError(f"gaussian_kernel: `size` must be a positive odd int, got {size!r}")
    if not sigma > 0:
        raise ConfigError(f"gaussian_kernel: `sigma` must be > 0, got {sigma!r}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k1 = torch.exp(-0.5 * (r / sigma) ** 2)
    k = torch.outer(k1, k1)
    return (k / k.sum()).float()


class Deblur(_LinearOperatorConstraint):
    """``A(x) = k * x`` (per-channel 2-D convolution, zero padding, same size) must equal the blurry ``y``.

    Args:
        y: ``[B or 1, C, H, W]`` blurred observation.
        kernel: ``[k, k]`` blur kernel with odd ``k`` (see :func:`gaussian_kernel`).
    """

    kind = "deblur"

    def __init__(self, y: torch.Tensor, kernel: torch.Tensor, *, decoder: Decoder | None = None) -> None:
        super().__init__(_check_tensor("Deblur", "y", y), decoder)
        self.kernel = self._check_kernel(kernel)

    @staticmethod
    def _check_kernel(kernel: Any) -> torch.Tensor:
        if not isinstance(kernel, torch.Tensor) or kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
            shape = tuple(kernel.shape) if isinstance(kernel, torch.Tensor) else type(kernel).__name__
            raise ConfigError(f"Deblur: `kernel` must be a square 2-D tensor with odd size, got {shape}")
        return kernel.float()

    @classmethod
    def from_image(cls, image: torch.Tensor, kernel: torch.Tensor, *, decoder: Decoder | None = None) -> Deblur:
        image = _check_tensor("Deblur", "image", image).float()
        k = cls._check_kernel(kernel)
        y = F.conv2d(image, k.to(image).expand(image.shape[1], 1, *k.shape), padding=k.shape[0] // 2, groups=image.shape[1])
        return cls(y, k, decoder=decoder)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(x)
        return F.conv2d(x, k.expand(x.shape[1], 1, *k.shape), padding=k.shape[0] // 2, groups=x.shape[1])

    def validate(self, shape: tuple[int, ...]) -> None:
        if tuple(self.y.shape[1:]) != tuple(shape[1:]) or self.y.shape[0] not in (1, shape[0]):
            raise ConfigError(f"Deblur: `y` shape {tuple(self.y.shape)} does not match sample shape {tuple(shape)}")


class FeatureLoss(Constraint):
    """A user-defined differentiable constraint: ``loss_fn(x) -> [B]`` (or a scalar, split evenly).

    ``loss_fn`` may run any cheap network (a feature extractor, a classifier); the sampler only
    differentiates it with respect to the clean sample, never the diffusion model.
    """

    kind = "feature_loss"

    def __init__(self, loss_fn: Callable[[torch.Tensor], torch.Tensor], *, decoder: Decoder | None = None) -> None:
        if not callable(loss_fn):
            raise ArgumentTypeError(f"FeatureLoss: `loss_fn` must be callable, got {type(loss_fn).__name__}")
        super().__init__(decoder)
        self.loss_fn = loss_fn

    def _loss_pixels(self, x: torch.Tensor) -> torch.Tensor:
        out = self.loss_fn(x)
        if out.dim() == 0:
            out = out.expand(x.shape[0]) / x.shape[0]
        if out.shape != (x.shape[0],):
            raise ConfigError(f"FeatureLoss: `loss_fn` must return a scalar or a [B] tensor, got shape {tuple(out.shape)}")
        return out
