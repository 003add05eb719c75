"""The shipped vaejax VAE design written in PyTorch, for the training-step benchmark (a baseline only: vaejax
does not depend on PyTorch).

Written the way a PyTorch user would: `Conv2d` / `ConvTranspose2d` with kernel == stride on `[B, C, T, P]`
maps, `Linear` layers, `binary_cross_entropy_with_logits`, `torch.optim.Adam`. Layer for layer it is
`vaejax.models.VAE` with the default `ModelConfig` (sixteenth grid: three maps of 16 x 84 cells, time
patches (2, 2), octave pitch patches, channels (32, 64), hidden 256, latent 16, the piano's pitch classes
per beat as a condition of encoder and decoder, the harmonic bias on the output logits, the plays head) and
the step is `vaejax.training.steps.make_vae_fns`'s: targets made from the bars inside the step, negative
ELBO with free bits and annealed KL weight, the five members' losses summed, Adam.

`load_jax(net, params)` copies one member's vaejax parameters into a `TorchVAE` (the layouts differ: vaejax
keeps activations pitch-major and convolutions as patch matrices), so that losses can be compared on equal
weights and inputs (`tests/test_torch_baseline.py`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PIANO = 1


def grid_maps(x: torch.Tensor, sub: int) -> torch.Tensor:
    """`[B, T, P]` roll in {0, 1} -> `[B, 3, T/sub, P]` sustain, onset and early maps (`vaejax.models.to_grid`)."""
    b, t, p = x.shape
    n, half = t // sub, sub // 2
    on = x * (1 - F.pad(x, (0, 0, 1, 0))[:, :-1])
    shifted = F.pad(on, (0, 0, half, 0))[:, :t].reshape(b, n, sub, p)
    onset = shifted.amax(2)
    early = shifted[:, :, half - 1]
    sustain = torch.maximum((x.reshape(b, n, sub, p).mean(2) >= 0.5).to(x.dtype), onset)
    return torch.stack([sustain, onset, early], 1)


def pitch_classes(num_pitches: int = 84, lowest: int = 24) -> torch.Tensor:
    """`[P, 12]` one-hot pitch class of every row."""
    return F.one_hot((torch.arange(num_pitches) + lowest) % 12, 12).float()


def conditions(x: torch.Tensor, beats: int = 4) -> torch.Tensor:
    """Bars `[5, B, T, P]` -> `[5, B, beats*12]`: the piano's pitch classes per beat, zeros for the piano."""
    piano = x[PIANO]
    b, t, p = piano.shape
    chroma = (piano.reshape(b, beats, t // beats, p).amax(2) @ pitch_classes(p) > 0).float().reshape(b, -1)
    member = torch.tensor([float(i != PIANO) for i in range(x.shape[0])])
    return member[:, None, None] * chroma[None]


class TorchVAE(nn.Module):
    """One instrument's VAE, the shipped design (see the module docstring)."""

    def __init__(
        self,
        latent=16,
        hidden=256,
        channels=(32, 64),
        time_patch=(2, 2),
        pitch_patch=12,
        steps=16,
        pitches=84,
        beats=4,
        maps=3,
        rates=(0.02, 0.024, 0.012),
    ):
        super().__init__()
        kt1, kt2 = time_patch
        c1, c2 = channels
        self.grid = (c2, steps // (kt1 * kt2), pitches // pitch_patch)  # [C, T, P]
        self.patch, self.maps, self.beats, self.steps, self.pitches = (kt1, pitch_patch), maps, beats, steps, pitches
        flat = math.prod(self.grid)
        self.conv1 = nn.Conv2d(maps, c1, (kt1, pitch_patch), (kt1, pitch_patch))
        self.conv2 = nn.Conv2d(c1, c2, (kt2, 1), (kt2, 1))
        self.enc = nn.Linear(flat, hidden)
        self.head = nn.Linear(hidden, 2 * latent)
        self.dec = nn.Linear(latent, hidden)
        self.enc_cond = nn.Linear(beats * 12, hidden, bias=False)
        self.dec_cond = nn.Linear(beats * 12, hidden, bias=False)
        self.harmony = nn.Parameter(torch.zeros(maps, 12, 12))
        self.plays = nn.Linear(hidden, 1)
        self.expand = nn.Linear(hidden, flat)
        self.deconv2 = nn.ConvTranspose2d(c2, c1, (kt2, 1), (kt2, 1))
        self.out = nn.ConvTranspose2d(c1, maps, (kt1, pitch_patch), (kt1, pitch_patch), bias=False)
        # one output bias per cell of a patch and map, as vaejax's (a bias per map alone would be fewer weights)
        logit = torch.tensor([math.log(r / (1 - r)) for r in rates[:maps]])
        self.out_b = nn.Parameter(logit[:, None, None].repeat(1, kt1, pitch_patch))
        self.register_buffer("pcs", pitch_classes(pitches), persistent=False)

    def encode(self, m, c):
        h = F.relu(self.conv2(F.relu(self.conv1(m))))
        h = self.enc(h.flatten(1)) + self.enc_cond(c)
        mu, logvar = self.head(F.relu(h)).chunk(2, -1)
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, z, c):
        h = F.relu(self.dec(z) + self.dec_cond(c))
        plays = self.plays(h)[:, 0]
        h = F.relu(self.expand(h)).view(-1, *self.grid)
        y = self.out(F.relu(self.deconv2(h)))  # [B, maps, T, P]
        b = y.shape[0]
        kt, kp = self.patch
        y = (
            y.view(b, self.maps, self.steps // kt, kt, self.pitches // kp, kp) + self.out_b[None, :, None, :, None]
        ).view(b, self.maps, self.steps, self.pitches)
        per_pc = torch.einsum("bkq,cqr->bckr", c.view(b, self.beats, 12), self.harmony)  # [B, maps, beats, 12]
        return y + (per_pc @ self.pcs.T).repeat_interleave(self.steps // self.beats, 2), plays

    def forward(self, m, c, eps):
        """Maps `[B, maps, T, P]`, condition `[B, beats*12]`, noise `[B, K]` -> (logits, mu, logvar, plays)."""
        mu, logvar = self.encode(m, c)
        logits, plays = self.decode(mu + torch.exp(0.5 * logvar) * eps, c)
        return logits, mu, logvar, plays


def member_loss(out, target, beta, free_bits):
    """vaejax.losses.elbo for one member: (loss, recon, kl)."""
    logits, mu, logvar, plays = out
    per = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum((1, 2, 3))
    per = per + F.binary_cross_entropy_with_logits(plays, target.amax((1, 2, 3)), reduction="none")
    recon = per.mean()
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
    loss = recon + beta * torch.clamp(kl - free_bits * mu.shape[-1], min=0).mean()
    return loss, recon, kl.mean()


def beta_at(step: int, beta=1.0, rate=0.999) -> float:
    return beta * (1.0 - rate**step)


def batch_inputs(x: torch.Tensor, sub: int = 6):
    """Bars `[5, B, T, P]` -> (maps `[5, B, 3, T/sub, P]`, conditions `[5, B, 48]`), computed inside the step."""
    n, b, t, p = x.shape
    return grid_maps(x.reshape(n * b, t, p), sub).reshape(n, b, 3, t // sub, p), conditions(x)


def make_step(nets, lr=1e-3, free_bits=0.5, loss_fn=None, fused=True):
    """Eager training step over five `TorchVAE`s: step(x `[5, B, T, P]`, i, eps `[5, B, K]` or None) -> the
    five losses. `loss_fn(net, maps, c, eps, beta)` replaces the forward and loss (e.g. a compiled one)."""
    opt = torch.optim.Adam([p for n in nets for p in n.parameters()], lr=lr, fused=fused)

    def default(net, m, c, eps, beta):
        return member_loss(net(m, c, eps), m, beta, free_bits)[0]

    loss_fn = loss_fn or default

    def step(x, i, eps=None):
        maps, c = batch_inputs(x)
        beta = torch.tensor(beta_at(i))
        if eps is None:
            eps = torch.randn(len(nets), x.shape[1], nets[0].head.out_features // 2)
        ls = [loss_fn(net, maps[k], c[k], eps[k], beta) for k, net in enumerate(nets)]
        opt.zero_grad(set_to_none=True)
        torch.stack(ls).sum().backward()
        opt.step()
        return torch.stack(ls).detach()

    return step


def make_batched_step(nets, lr=1e-3, free_bits=0.5):
    """The five members as one batched program (`torch.func.vmap` over stacked parameters, PyTorch's analogue
    of vaejax's vmap): step(x, i, eps=None) -> the five losses."""
    from torch.func import functional_call, stack_module_state, vmap

    params, buffers = stack_module_state(nets)
    base = TorchVAE().to("meta")
    opt = torch.optim.Adam(list(params.values()), lr=lr, fused=True)

    def one(p, b, m, c, eps, beta):
        return member_loss(functional_call(base, (p, b), (m, c, eps)), m, beta, free_bits)[0]

    batched = vmap(one, in_dims=(0, 0, 0, 0, 0, None))

    def step(x, i, eps=None):
        maps, c = batch_inputs(x)
        if eps is None:
            eps = torch.randn(len(nets), x.shape[1], nets[0].head.out_features // 2)
        ls = batched(params, buffers, maps, c, eps, torch.tensor(beta_at(i)))
        opt.zero_grad(set_to_none=True)
        ls.sum().backward()
        opt.step()
        return ls.detach()

    return step


def load_jax(net: TorchVAE, p) -> TorchVAE:
    """Copy one member of vaejax's stacked VAE parameters (a nested mapping of arrays, e.g. the stacked
    `nnx.State` indexed at one member) into `net`, converting vaejax's pitch-major patch layouts."""

    def a(x):
        return torch.from_numpy(np.array(x, np.float32))

    c1, c2 = net.conv1.out_channels, net.conv2.out_channels
    kt1, kp = net.patch
    kt2 = net.conv2.kernel_size[0]
    ct, tt, pp = net.grid
    maps = net.maps
    sd = {
        # conv1: rows (map, time, pitch) of the concatenated maps' patches
        "conv1.weight": a(p["conv1"]["w"]).reshape(maps, kt1, kp, c1).permute(3, 0, 1, 2),
        "conv1.bias": a(p["conv1"]["b"]),
        # conv2: rows (time, channel)
        "conv2.weight": a(p["conv2"]["w"]).reshape(kt2, c1, c2).permute(2, 1, 0)[..., None],
        "conv2.bias": a(p["conv2"]["b"]),
        # flattened (pitch, time, channel) in vaejax, (channel, time, pitch) here
        "enc.weight": a(p["enc"]["kernel"]).reshape(pp, tt, ct, -1).permute(3, 2, 1, 0).reshape(-1, ct * tt * pp),
        "enc.bias": a(p["enc"]["bias"]),
        "head.weight": a(p["head"]["kernel"]).T,
        "head.bias": a(p["head"]["bias"]),
        "dec.weight": a(p["dec"]["kernel"]).T,
        "dec.bias": a(p["dec"]["bias"]),
        "enc_cond.weight": a(p["enc_cond"]["kernel"]).T,
        "dec_cond.weight": a(p["dec_cond"]["kernel"]).T,
        "harmony": a(p["harmony"]),
        "plays.weight": a(p["plays"]["kernel"]).T,
        "plays.bias": a(p["plays"]["bias"]),
        "expand.weight": a(p["expand"]["kernel"]).reshape(-1, pp, tt, ct).permute(3, 2, 1, 0).reshape(ct * tt * pp, -1),
        "expand.bias": a(p["expand"]["bias"]).reshape(pp, tt, ct).permute(2, 1, 0).reshape(-1),
        # deconv2: columns (time, channel out)
        "deconv2.weight": a(p["deconv2"]["w"]).reshape(c2, kt2, c1).permute(0, 2, 1)[..., None],
        "deconv2.bias": a(p["deconv2"]["b"]),
        # output: columns (map, time, pitch)
        "out.weight": a(p["out_w"]).reshape(c1, maps, kt1, kp),
        "out_b": a(p["out_b"]).reshape(maps, kt1, kp),
    }
    net.load_state_dict(sd, strict=True)
    return net
