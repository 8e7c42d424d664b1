"""Latent (VAE) pipelines with tiny random-initialised diffusers components (no downloads)."""

import pytest
import torch
from conftest import ddim
from gradkit_fastsample import (
    ConstrainedSampler,
    FastSampleCallback,
    FastSampleConfig,
    Inpaint,
    LatentInpaint,
    vae_decoder,
)
from gradkit_fastsample.denoiser import UNetDenoiser
from gradkit_fastsample.sampler import correct


def _vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                         norm_num_groups=4, sample_size=16).eval().requires_grad_(False)


def _cond_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(1)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                norm_num_groups=8, attention_head_dim=4).eval().requires_grad_(False)


def _sd_sched():
    return ddim(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, set_alpha_to_one=False, steps_offset=1)


def _image_mask():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :, :9] = 1  # column 8 is known but its 2x2 latent block is not whole
    return img, mask


def test_latent_mask_only_whole_blocks_known():
    vae = _vae()
    img, mask = _image_mask()
    c = LatentInpaint.from_image(vae, img, mask)
    assert c.mask.shape == (1, 4, 8, 8)
    assert c.mask[..., :4].eq(1).all() and c.mask[..., 4:].eq(0).all()
    with torch.no_grad():
        z = vae.encode(img * mask).latent_dist.mean * vae.config.scaling_factor
    torch.testing.assert_close(c.image, z)


def test_latent_inpainting_with_conditional_unet_and_cfg():
    vae, unet = _vae(), _cond_unet()
    img, mask = _image_mask()
    emb = torch.randn(1, 3, 16, generator=torch.Generator().manual_seed(2))
    c = LatentInpaint.from_image(vae, img, mask)
    calls = []
    h = unet.conv_out.register_full_backward_hook(lambda *a: calls.append(1))
    s = ConstrainedSampler(unet, _sd_sched(), c, vae=vae, num_inference_steps=3, inner_steps=2,
                           model_kwargs={"encoder_hidden_states": emb}, guidance_scale=3.0,
                           negative_model_kwargs={"encoder_hidden_states": torch.zeros_like(emb)})
    out = s.sample((2, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    h.remove()
    assert out.images.shape == (2, 3, 16, 16) and torch.isfinite(out.images).all()
    assert calls == [] and out.trace.nfe_backward == 0 and out.trace.nfe_forward == 3 * 5
    assert all(r[-1] < r[0] for r in out.trace.residuals)


def test_cfg_uses_the_same_guided_function_at_base_and_probe():
    unet = _cond_unet()
    emb = torch.randn(1, 3, 16)
    neg = torch.zeros(1, 3, 16)
    den = UNetDenoiser(unet, _sd_sched(), model_kwargs={"encoder_hidden_states": emb}, guidance_scale=2.5,
                       negative_model_kwargs={"encoder_hidden_states": neg})
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        u = unet(x, torch.tensor(500), encoder_hidden_states=neg.expand(2, -1, -1)).sample
        c = unet(x, torch.tensor(500), encoder_hidden_states=emb.expand(2, -1, -1)).sample
        got = den.model_output(x, 500)
    torch.testing.assert_close(got, u + 2.5 * (c - u), rtol=1e-4, atol=1e-5)


def test_pixel_constraint_through_decoder_direction_is_loss_gradient():
    """g = -grad_z of the pixel loss through the decoder only, checked against finite differences of the loss."""
    vae = _vae().double()
    img, mask = _image_mask()
    dec = vae_decoder(vae)
    c = Inpaint(img, mask, decoder=lambda z: vae.decode(z / vae.config.scaling_factor).sample)
    z = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    g = c.direction(z)
    assert dec(z).shape == (1, 3, 16, 16)
    for idx in [(0, 0, 0, 0), (0, 2, 3, 5), (0, 3, 7, 7)]:
        e = torch.zeros_like(z)
        e[idx] = 1e-5
        fd = (c.loss(z + e) - c.loss(z - e)).item() / 2e-5
        assert g[idx].item() == pytest.approx(-fd, rel=1e-5, abs=1e-9)


def test_pixel_inpainting_of_latent_model_reduces_pixel_error():
    vae, unet = _vae(), _cond_unet()
    img, mask = _image_mask()
    c = Inpaint(img, mask, decoder=vae_decoder(vae))
    den = UNetDenoiser(unet, _sd_sched(), model_kwargs={"encoder_hidden_states": torch.randn(1, 3, 16)})
    res = []
    correct(den, torch.randn(1, 4, 8, 8), 299, c, FastSampleConfig(inner_steps=4, lr_start=0.3, lr_end=0.1), res)
    assert res[-1] < res[0]
    assert all(p.grad is None for p in vae.parameters())


def test_diffusers_callback_in_stable_diffusion_pipeline():
    from diffusers import StableDiffusionPipeline

    vae, unet = _vae(), _cond_unet()
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=_sd_sched(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    img, mask = _image_mask()
    c = LatentInpaint.from_image(vae, img, mask)
    cb = FastSampleCallback(c, inner_steps=2)
    emb = torch.randn(1, 3, 16, generator=torch.Generator().manual_seed(3))
    kw = dict(prompt_embeds=emb, num_inference_steps=4, guidance_scale=1.0, eta=0.15, output_type="latent",
              height=16, width=16)
    free = pipe(**kw, generator=torch.Generator().manual_seed(0)).images
    out = pipe(**kw, generator=torch.Generator().manual_seed(0), callback_on_step_end=cb,
               callback_on_step_end_tensor_inputs=cb.tensor_inputs).images
    assert out.shape == (1, 4, 8, 8)
    assert len(cb.trace.residuals) == 3 and cb.trace.nfe_forward == 3 * (1 + 2 * 2)
    err_free = c.error(free).item()
    err = c.error(out).item()
    assert err < err_free, (err, err_free)
