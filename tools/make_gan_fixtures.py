"""Writes the GAN-training parity fixtures of `crates/steex-gan` from PyTorch.

    /path/to/python tools/make_gan_fixtures.py

The modules are the published ones (valeoai/STEEX `models/networks/discriminator.py`,
`normalization.py` `get_nonspade_norm_layer` with `norm_D spectralinstance`, `loss.py`
`GANLoss` / `VGGLoss`, `pix2pix_model.py` `compute_generator_loss` /
`compute_discriminator_loss` / `create_optimizers`), copied below with their semantics,
on reduced sizes: `label_nc` 4, `ndf` 4, `n_layers_D` 4, `num_D` 2, images 3x32x48, batch 2.
Spectral norm is the real `torch.nn.utils.spectral_norm`; the VGG19 is torchvision's own
`make_layers` on the VGG19 configuration ("E") at 1/16 of the width (same layer sequence
and `features.<i>` keys as `torchvision.models.vgg19().features`). PyTorch default init,
the discriminators' prediction layers' weights times 4 (so some hinge terms are inactive).

Every reference is computed in float64 from the float32 values stored (weights, inputs), so
it carries no float32 round-off of its own. Files under `tests/fixtures/gan/`:

- `sn.safetensors`: one spectral-normed `Conv2d(5, 6, 4, stride 2, padding 2)` in train
  mode: `weight_orig`, `weight_u`, `weight_v`, `bias`, `x`, `r` before; after one forward
  `after.weight_u`, `after.weight_v`, `after.weight` (= `weight_orig / sigma`), `after.y`,
  and `grad.weight_orig` of `sum(y * r)` (the gradient flows through sigma).
- `d_init.safetensors`: the `MultiscaleDiscriminator` state dict (published keys).
- `vgg.safetensors`: the reduced VGG19 `features.*` state dict.
- `inputs.safetensors`: `real`, `fake` `[2, 3, 32, 48]` in (-1, 1), `semantics`
  `[2, 4, 32, 48]` one-hot.
- `forward.safetensors`: D in train mode on `cat([semantics, fake]) ++ cat([semantics,
  real])` (batch 4, as `discriminate` does): `out.<i>.<j>` every output of discriminator
  `i`, layer `j`; `after.<key>` the `weight_u` / `weight_v` after that forward; the loss
  terms on that forward: `g_gan`, `g_feat` (x lambda_feat 10), `g_vgg` (x lambda_vgg 10),
  `g_total`, `vgg.<k>` the 5 VGG features of `fake`, `grad_fake` (d g_total / d fake),
  `d_fake`, `d_real` (hinge, for the discriminator).
- `dstep.safetensors`: two discriminator steps from `d_init` on the same batch (fake
  detached), Adam lr 2 * 0.0002, betas (0, 0.9) (TTUR), loss `D_Fake + D_real`:
  `s<k>.d_fake`, `s<k>.d_real`, `s<k>.param.<key>` (after step k, buffers included),
  `s<k>.delta.<key>` (Adam's change of each parameter in step k, taken in float64: the
  change is ~lr, so float32 parameters would blur it), `s1.grad.<key>`,
  `s2.exp_avg.<key>`, `s2.exp_avg_sq.<key>`.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gan")
spectral_norm = torch.nn.utils.spectral_norm


class Opt:
    label_nc = 4
    output_nc = 3
    contain_dontcare_label = False
    no_instance = True
    ndf = 4
    n_layers_D = 4
    num_D = 2
    norm_D = "spectralinstance"
    no_ganFeat_loss = False
    gan_mode = "hinge"
    lambda_feat = 10.0
    lambda_vgg = 10.0
    lr = 0.0002
    no_TTUR = False


# --- normalization.py get_nonspade_norm_layer (spectral + instance) -------------------------
def get_nonspade_norm_layer(opt, norm_type="instance"):
    def get_out_channel(layer):
        if hasattr(layer, "out_channels"):
            return getattr(layer, "out_channels")
        return layer.weight.size(0)

    def add_norm_layer(layer):
        nonlocal norm_type
        if norm_type.startswith("spectral"):
            layer = spectral_norm(layer)
            subnorm_type = norm_type[len("spectral"):]
        if subnorm_type == "none" or len(subnorm_type) == 0:
            return layer
        if getattr(layer, "bias", None) is not None:
            delattr(layer, "bias")
            layer.register_parameter("bias", None)
        if subnorm_type == "instance":
            norm_layer = nn.InstanceNorm2d(get_out_channel(layer), affine=False)
        else:
            raise ValueError(subnorm_type)
        return nn.Sequential(layer, norm_layer)

    return add_norm_layer


# --- discriminator.py ------------------------------------------------------------------------
class MultiscaleDiscriminator(nn.Module):
    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        for i in range(opt.num_D):
            self.add_module("discriminator_%d" % i, NLayerDiscriminator(opt))

    def downsample(self, input):
        return F.avg_pool2d(input, kernel_size=3, stride=2, padding=[1, 1], count_include_pad=False)

    def forward(self, input):
        result = []
        get_intermediate_features = not self.opt.no_ganFeat_loss
        for name, D in self.named_children():
            out = D(input)
            if not get_intermediate_features:
                out = [out]
            result.append(out)
            input = self.downsample(input)
        return result


class NLayerDiscriminator(nn.Module):
    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        kw = 4
        padw = int(math.ceil((kw - 1.0) / 2))
        nf = opt.ndf
        input_nc = opt.label_nc + opt.output_nc + (1 if opt.contain_dontcare_label else 0) \
            + (0 if opt.no_instance else 1)
        norm_layer = get_nonspade_norm_layer(opt, opt.norm_D)
        sequence = [[nn.Conv2d(input_nc, nf, kernel_size=kw, stride=2, padding=padw),
                     nn.LeakyReLU(0.2, False)]]
        for n in range(1, opt.n_layers_D):
            nf_prev = nf
            nf = min(nf * 2, 512)
            sequence += [[norm_layer(nn.Conv2d(nf_prev, nf, kernel_size=kw, stride=2, padding=padw)),
                          nn.LeakyReLU(0.2, False)]]
        sequence += [[nn.Conv2d(nf, 1, kernel_size=kw, stride=1, padding=padw)]]
        for n in range(len(sequence)):
            self.add_module("model" + str(n), nn.Sequential(*sequence[n]))

    def forward(self, input):
        results = [input]
        for submodel in self.children():
            results.append(submodel(results[-1]))
        if not self.opt.no_ganFeat_loss:
            return results[1:]
        return results[-1]


# --- loss.py ---------------------------------------------------------------------------------
class GANLoss(nn.Module):
    """`gan_mode hinge` of the published GANLoss (the other modes are not used by STEEX)."""

    def loss(self, input, target_is_real, for_discriminator=True):
        zero = torch.zeros(1, dtype=input.dtype).expand_as(input)
        if for_discriminator:
            if target_is_real:
                minval = torch.min(input - 1, zero)
                return -torch.mean(minval)
            minval = torch.min(-input - 1, zero)
            return -torch.mean(minval)
        assert target_is_real
        return -torch.mean(input)

    def __call__(self, input, target_is_real, for_discriminator=True):
        if isinstance(input, list):
            loss = 0
            for pred_i in input:
                if isinstance(pred_i, list):
                    pred_i = pred_i[-1]
                loss_tensor = self.loss(pred_i, target_is_real, for_discriminator)
                bs = 1 if len(loss_tensor.size()) == 0 else loss_tensor.size(0)
                new_loss = torch.mean(loss_tensor.view(bs, -1), dim=1)
                loss += new_loss
            return loss / len(input)
        return self.loss(input, target_is_real, for_discriminator)


class VGG19(nn.Module):
    """architecture.py VGG19 on the given `features` (slices at relu1_1 ... relu5_1)."""

    def __init__(self, features):
        super().__init__()
        bounds = [(0, 2), (2, 7), (7, 12), (12, 21), (21, 30)]
        self.slices = nn.ModuleList(
            [nn.Sequential(*[features[x] for x in range(a, b)]) for a, b in bounds])
        for p in self.parameters():
            p.requires_grad = False

    def forward(self, x):
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out


class VGGLoss(nn.Module):
    def __init__(self, vgg):
        super().__init__()
        self.vgg = vgg
        self.criterion = nn.L1Loss()
        self.weights = [1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0]

    def forward(self, x, y):
        x_vgg, y_vgg = self.vgg(x), self.vgg(y)
        loss = 0
        for i in range(len(x_vgg)):
            loss += self.weights[i] * self.criterion(x_vgg[i], y_vgg[i].detach())
        return loss, x_vgg


# --- pix2pix_model.py ------------------------------------------------------------------------
def discriminate(netD, input_semantics, fake_image, real_image):
    fake_concat = torch.cat([input_semantics, fake_image], dim=1)
    real_concat = torch.cat([input_semantics, real_image], dim=1)
    out = netD(torch.cat([fake_concat, real_concat], dim=0))
    fake = [[t[:t.size(0) // 2] for t in p] for p in out]
    real = [[t[t.size(0) // 2:] for t in p] for p in out]
    return fake, real, out


def generator_losses(opt, netD, vgg_loss, gan, semantics, fake, real):
    pred_fake, pred_real, out = discriminate(netD, semantics, fake, real)
    g_gan = gan(pred_fake, True, for_discriminator=False)
    num_D = len(pred_fake)
    feat = torch.zeros(1, dtype=fake.dtype)
    for i in range(num_D):
        for j in range(len(pred_fake[i]) - 1):
            feat = feat + F.l1_loss(pred_fake[i][j], pred_real[i][j].detach()) * opt.lambda_feat / num_D
    vgg, x_vgg = vgg_loss(fake, real)
    return g_gan, feat, vgg * opt.lambda_vgg, out, pred_fake, pred_real, x_vgg


def state(module):
    return {k: v.detach().clone().float().contiguous() for k, v in module.state_dict().items()}


def f32(t):
    return t.detach().float().contiguous()


def spectral_fixture():
    torch.manual_seed(1)
    conv = spectral_norm(nn.Conv2d(5, 6, 4, stride=2, padding=2))
    before = state(conv)
    x = torch.randn(2, 5, 9, 11)
    conv = conv.double().train()
    y = conv(x.double())
    r = torch.randn_like(y)
    (y * r).sum().backward()
    out = {k: v for k, v in before.items()}
    out["x"] = x
    out["r"] = f32(r)
    out["after.weight_u"] = f32(conv.weight_u)
    out["after.weight_v"] = f32(conv.weight_v)
    out["after.weight"] = f32(conv.weight)
    out["after.y"] = f32(y)
    out["grad.weight_orig"] = f32(conv.weight_orig.grad)
    save_file(out, os.path.join(ROOT, "sn.safetensors"))


def main():
    os.makedirs(ROOT, exist_ok=True)
    spectral_fixture()
    opt = Opt()
    torch.manual_seed(0)
    netD = MultiscaleDiscriminator(opt)
    with torch.no_grad():
        # Predictions beyond +-1 in places, so the hinge terms are inactive there: at default
        # init every |D(x)| < 1, every term is active, and the prediction bias's gradient is
        # +1 - 1 = 0 exactly, its Adam step float noise.
        for i in range(opt.num_D):
            getattr(netD, f"discriminator_{i}")._modules[f"model{opt.n_layers_D}"][0].weight.mul_(4.0)
    d_init = state(netD)
    cfg = [c if c == "M" else c // 16 for c in torchvision.models.vgg.cfgs["E"]]
    features = torchvision.models.vgg.make_layers(cfg, batch_norm=False)
    vgg_state = {"features." + k: v for k, v in state(features).items()}

    gen = torch.Generator().manual_seed(2)
    b, h, w = 2, 32, 48
    real = torch.tanh(torch.randn(b, 3, h, w, generator=gen) * 1.5)
    fake = torch.tanh(torch.randn(b, 3, h, w, generator=gen) * 1.5)
    labels = torch.randint(0, opt.label_nc, (b, 1, h, w), generator=gen)
    semantics = torch.zeros(b, opt.label_nc, h, w).scatter_(1, labels, 1.0)
    save_file(d_init, os.path.join(ROOT, "d_init.safetensors"))
    save_file(vgg_state, os.path.join(ROOT, "vgg.safetensors"))
    save_file({"real": real, "fake": fake, "semantics": semantics},
              os.path.join(ROOT, "inputs.safetensors"))
    real, fake, semantics = real.double(), fake.double(), semantics.double()

    gan = GANLoss()
    vgg_loss = VGGLoss(VGG19(features.double()))

    # One train-mode forward and the loss terms on it (generator side, and D's hinge terms).
    netD = netD.double().train()
    fake_g = fake.clone().requires_grad_(True)
    g_gan, g_feat, g_vgg, out, pred_fake, pred_real, x_vgg = generator_losses(
        opt, netD, vgg_loss, gan, semantics, fake_g, real)
    total = g_gan + g_feat + g_vgg
    total.sum().backward()
    res = {}
    for i, p in enumerate(out):
        for j, t in enumerate(p):
            res[f"out.{i}.{j}"] = f32(t)
    for k, v in netD.state_dict().items():
        if k.endswith("weight_u") or k.endswith("weight_v"):
            res["after." + k] = f32(v)
    res["g_gan"] = f32(g_gan.reshape(1))
    res["g_feat"] = f32(g_feat.reshape(1))
    res["g_vgg"] = f32(g_vgg.reshape(1))
    res["g_total"] = f32(total.reshape(1))
    for k, t in enumerate(x_vgg):
        res[f"vgg.{k}"] = f32(t)
    res["grad_fake"] = f32(fake_g.grad)
    res["d_fake"] = f32(gan(pred_fake, False, for_discriminator=True).reshape(1))
    res["d_real"] = f32(gan(pred_real, True, for_discriminator=True).reshape(1))
    save_file(res, os.path.join(ROOT, "forward.safetensors"))

    # Two discriminator steps from the initial state (create_optimizers, TTUR).
    netD = MultiscaleDiscriminator(opt)
    netD.load_state_dict(d_init)
    netD = netD.double().train()
    beta1, beta2 = (opt.beta1, opt.beta2) if opt.no_TTUR else (0.0, 0.9)  # SEAN writes (0, 0.9); recent torch wants floats
    d_lr = opt.lr if opt.no_TTUR else opt.lr * 2
    optimizer_D = torch.optim.Adam(list(netD.parameters()), lr=d_lr, betas=(beta1, beta2))
    names = {id(p): n for n, p in netD.named_parameters()}
    step = {}
    for k in (1, 2):
        optimizer_D.zero_grad()
        fake_d = fake.detach().clone().requires_grad_()
        pred_fake, pred_real, _ = discriminate(netD, semantics, fake_d, real)
        d_fake = gan(pred_fake, False, for_discriminator=True)
        d_real = gan(pred_real, True, for_discriminator=True)
        d_loss = (d_fake + d_real).mean()
        d_loss.backward()
        if k == 1:
            for n, p in netD.named_parameters():
                step[f"s1.grad.{n}"] = f32(p.grad)
        prev = {n: p.detach().clone() for n, p in netD.named_parameters()}
        optimizer_D.step()
        for n, p in netD.named_parameters():
            step[f"s{k}.delta.{n}"] = f32(p.detach() - prev[n])
        step[f"s{k}.d_fake"] = f32(d_fake.reshape(1))
        step[f"s{k}.d_real"] = f32(d_real.reshape(1))
        for n, v in netD.state_dict().items():
            step[f"s{k}.param.{n}"] = f32(v)
    for p, st in optimizer_D.state.items():
        step[f"s2.exp_avg.{names[id(p)]}"] = f32(st["exp_avg"])
        step[f"s2.exp_avg_sq.{names[id(p)]}"] = f32(st["exp_avg_sq"])
    save_file(step, os.path.join(ROOT, "dstep.safetensors"))

    total_bytes = sum(os.path.getsize(os.path.join(ROOT, f)) for f in os.listdir(ROOT))
    print(f"wrote {ROOT}: {total_bytes} bytes")
    for k in sorted(d_init):
        print(k, tuple(d_init[k].shape))
    print("g_gan", float(g_gan), "g_feat", float(g_feat), "g_vgg", float(g_vgg))
    print("d_fake", float(res["d_fake"]), "d_real", float(res["d_real"]))
    for i in range(opt.num_D):
        p = res[f"out.{i}.{opt.n_layers_D}"]
        print(f"D{i} prediction: fake > -1: {(p[:b] > -1).float().mean():.2f}, "
              f"real < 1: {(p[b:] < 1).float().mean():.2f}")
    for k, t in enumerate(x_vgg):
        print("vgg", k, tuple(t.shape), float(t.abs().max()))


if __name__ == "__main__":
    main()
