"""Reference modules of the published STEEX / SEAN PyTorch code, written for this project.

The published code (github valeoai/STEEX, `models/networks/`) is not a package, runs only on
CUDA as written and fixes the style length at 512. These classes reproduce its numerical
behaviour on any device with the same module tree, so their `state_dict()` has exactly the
published checkpoint's names (`Zencoder.model.1.weight`, `head_0.ace_0.fc_mu3.weight`,
`up_0.conv_s.weight_orig`, ...). `check_reference.py` checks them against fixtures written
by the published code itself before the fixtures of this project are made from them.

Decision models are torchvision's own classes, wrapped as the published
`DecisionDensenetModel` / `DecisionResnetModel` wrap them (attribute names `feat_extract`,
`classifier`, `resnet`), so the state dict names match too.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

# --------------------------------------------------------------------------------------------
# SEAN generator
# --------------------------------------------------------------------------------------------


class Zencoder(nn.Module):
    """Style encoder: per-label mean of a feature map at half resolution."""

    def __init__(self, input_nc, output_nc, ngf=32, n_downsampling=2):
        super().__init__()
        model = [nn.ReflectionPad2d(1), nn.Conv2d(input_nc, ngf, 3, padding=0),
                 nn.InstanceNorm2d(ngf), nn.LeakyReLU(0.2)]
        for i in range(n_downsampling):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                      nn.InstanceNorm2d(ngf * mult * 2), nn.LeakyReLU(0.2)]
        mult = 2 ** n_downsampling
        model += [nn.ConvTranspose2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1,
                                     output_padding=1),
                  nn.InstanceNorm2d(ngf * mult // 2), nn.LeakyReLU(0.2)]
        # SEAN writes 256 here, which is ngf * mult * 2 for its only working ngf (32).
        model += [nn.ReflectionPad2d(1), nn.Conv2d(ngf * mult * 2, output_nc, 3, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, image, segmap):
        codes = self.model(image)
        segmap = F.interpolate(segmap, size=codes.shape[2:], mode="nearest")
        b, s = codes.shape[0], codes.shape[1]
        out = torch.zeros((b, segmap.shape[1], s), dtype=codes.dtype, device=codes.device)
        for i in range(b):
            for j in range(segmap.shape[1]):
                m = segmap.bool()[i, j]
                area = int(m.sum())
                if area > 0:
                    out[i, j] = codes[i].masked_select(m).reshape(s, area).mean(1)
        return out


class Spade(nn.Module):
    """The mask branch of ACE (`Spade.*` in the checkpoint)."""

    def __init__(self, norm_nc, label_nc, nhidden=128):
        super().__init__()
        # Present in the published checkpoints, never used.
        self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, nhidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(nhidden, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(nhidden, norm_nc, 3, padding=1)

    def forward(self, segmap):
        a = self.mlp_shared(segmap)
        return self.mlp_gamma(a), self.mlp_beta(a)


class NoiseReplay:
    """The noise of steex's `--noise seed:N`: the stream `examples/noise_stream.rs` writes
    (each ACE layer takes the next H x W values, in forward order, the same map for every
    image of the batch); every generator forward starts it again (`SEANGenerator.generate`
    calls `reset`). `per_image`: steex's `NoiseMode::SeededPerImage` (what `steex train
    generator` draws), one map per image as SEAN's `randn(B, ...)`: each layer takes the
    next B x H x W values as its [B, H, W] maps, image after image (a batch of one takes
    what the shared replay takes)."""

    def __init__(self, stream, per_image=False):
        self.stream = torch.as_tensor(stream, dtype=torch.float32)
        self.per_image = per_image
        self.pos = 0
        self.used = 0

    def reset(self):
        self.pos = 0

    def take(self, n):
        assert self.pos + n <= len(self.stream), f"noise stream of {len(self.stream)} too short"
        v = self.stream[self.pos:self.pos + n]
        self.pos += n
        self.used = max(self.used, self.pos)
        return v


class ACE(nn.Module):
    """Semantic region-adaptive normalisation with per-label style codes.

    noise: "reference" draws fresh N(0, 1) per forward as published (a `[B, W, H, 1]` draw,
    transposed); "off" treats `noise_var` as zero; a `torch.Generator` draws from it.
    """

    def __init__(self, norm_nc, label_nc, style_length, use_rgb=True):
        super().__init__()
        self.use_rgb = use_rgb
        self.style_length = style_length
        self.label_nc = label_nc
        self.Spade = Spade(norm_nc, label_nc)
        self.blending_gamma = nn.Parameter(torch.zeros(1))
        self.blending_beta = nn.Parameter(torch.zeros(1))
        self.noise_var = nn.Parameter(torch.zeros(norm_nc))
        self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
        self.noise = "reference"
        if use_rgb:
            for j in range(label_nc):
                setattr(self, f"fc_mu{j}", nn.Linear(style_length, style_length))
            self.conv_gamma = nn.Conv2d(style_length, norm_nc, 3, padding=1)
            self.conv_beta = nn.Conv2d(style_length, norm_nc, 3, padding=1)

    def forward(self, x, segmap, style_codes):
        if self.noise == "off":
            added = 0.0
        elif isinstance(self.noise, NoiseReplay):
            # steex's `--noise seed:N`: the next H x W values of its stream as an [H, W]
            # map, the same for every image (per image: the next B x H x W as [B, H, W]);
            # as a `[B, W, H, 1]` draw, transposed below.
            b, _, h, w = x.shape
            if self.noise.per_image:
                m = self.noise.take(b * h * w).reshape(b, h, w).to(x.dtype)
                r = m.transpose(1, 2)[:, :, :, None]
            else:
                m = self.noise.take(h * w).reshape(h, w).to(x.dtype)
                r = m.t()[None, :, :, None].expand(b, w, h, 1)
            added = (r * self.noise_var).transpose(1, 3)
        else:
            gen = None if self.noise == "reference" else self.noise
            r = torch.randn(x.shape[0], x.shape[3], x.shape[2], 1, device=x.device,
                            generator=gen)
            added = (r * self.noise_var).transpose(1, 3)
        normalized = self.param_free_norm(x + added)
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        gamma_s, beta_s = self.Spade(segmap)
        if not self.use_rgb:
            return normalized * (1 + gamma_s) + beta_s
        b, _, h, w = normalized.shape
        middle = torch.zeros((b, self.style_length, h, w), device=x.device, dtype=x.dtype)
        for i in range(b):
            for j in range(segmap.shape[1]):
                m = segmap.bool()[i, j]
                area = int(m.sum())
                if area > 0:
                    mu = F.relu(getattr(self, f"fc_mu{j}")(style_codes[i][j]))
                    middle[i].masked_scatter_(m, mu.reshape(self.style_length, 1)
                                              .expand(self.style_length, area))
        gamma_a = self.conv_gamma(middle)
        beta_a = self.conv_beta(middle)
        ag = torch.sigmoid(self.blending_gamma)
        ab = torch.sigmoid(self.blending_beta)
        gamma = ag * gamma_a + (1 - ag) * gamma_s
        beta = ab * beta_a + (1 - ab) * beta_s
        return normalized * (1 + gamma) + beta


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin, fout, label_nc, style_length, use_rgb=True):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmid = min(fin, fout)
        sn = nn.utils.spectral_norm
        self.conv_0 = sn(nn.Conv2d(fin, fmid, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(fmid, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(fin, fout, 1, bias=False))
        self.ace_0 = ACE(fin, label_nc, style_length, use_rgb)
        self.ace_1 = ACE(fmid, label_nc, style_length, use_rgb)
        if self.learned_shortcut:
            self.ace_s = ACE(fin, label_nc, style_length, use_rgb)

    def forward(self, x, seg, z):
        # Noise draw order, as published: ace_s, ace_0, ace_1.
        xs = self.conv_s(self.ace_s(x, seg, z)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.ace_0(x, seg, z), 0.2))
        dx = self.conv_1(F.leaky_relu(self.ace_1(dx, seg, z), 0.2))
        return xs + dx


class SEANGenerator(nn.Module):
    """SPADEGenerator of the published code, `num_upsampling_layers` normal."""

    def __init__(self, label_nc=19, ngf=64, style_length=512, crop_size=256, aspect_ratio=1.0):
        super().__init__()
        self.sw = crop_size // 32
        self.sh = round(self.sw / aspect_ratio)
        nf = ngf
        L, S = label_nc, style_length
        self.Zencoder = Zencoder(3, S)
        self.fc = nn.Conv2d(L, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, L, S)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, L, S)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, L, S)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, L, S)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, L, S)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, L, S)
        self.up_3 = SPADEResnetBlock(2 * nf, nf, L, S, use_rgb=False)
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)

    def set_noise(self, mode):
        for m in self.modules():
            if isinstance(m, ACE):
                m.noise = mode

    def encode(self, image, seg):
        return self.Zencoder(image, seg)

    def generate(self, seg, z):
        for m in self.modules():
            if isinstance(m, ACE) and isinstance(m.noise, NoiseReplay):
                m.noise.reset()
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")
        x = self.fc(F.interpolate(seg, size=(self.sh, self.sw)))
        x = self.head_0(x, seg, z)
        x = self.G_middle_0(up(x), seg, z)
        x = self.G_middle_1(x, seg, z)
        x = self.up_0(up(x), seg, z)
        x = self.up_1(up(x), seg, z)
        x = self.up_2(up(x), seg, z)
        x = self.up_3(up(x), seg, z)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))

    def forward(self, seg, image):
        return self.generate(seg, self.encode(image, seg))


def one_hot(mask, label_nc):
    """Label map [B, H, W] (255 = unknown -> label_nc - 1) to one-hot [B, L, H, W]."""
    mask = mask.clone().long()
    mask[mask == 255] = label_nc - 1
    out = torch.zeros(mask.shape[0], label_nc, *mask.shape[1:])
    return out.scatter_(1, mask.unsqueeze(1), 1.0)


def randomize_sean(g, seed=0):
    """Non-trivial blending, noise scales and batch-norm stats; then a few train-mode forwards
    move the spectral-norm u/v away from their initial values, and the model is frozen."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ACE):
                m.blending_gamma.uniform_(-1.5, 1.5, generator=gen)
                m.blending_beta.uniform_(-1.5, 1.5, generator=gen)
                m.noise_var.uniform_(0, 0.2, generator=gen)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    return g


def move_spectral_vectors(g, seg, image, n=3):
    """Train-mode forwards update u/v (power iteration) and the batch-norm stats, as training
    would; the model is returned in eval mode."""
    g.train()
    with torch.no_grad():
        for _ in range(n):
            g(seg, image)
    g.eval()
    return g


# --------------------------------------------------------------------------------------------
# Decision models (torchvision's classes, wrapped as published)
# --------------------------------------------------------------------------------------------


class _Identity(nn.Module):
    def forward(self, x):
        return x


class _DenseNetFeatures(nn.Module):
    """`DenseNet121` of the published code: torchvision DenseNet without its classifier."""

    def __init__(self, densenet):
        super().__init__()
        self.feat_extract = densenet
        self.output_size = densenet.classifier.in_features
        self.feat_extract.classifier = _Identity()

    def forward(self, x):
        return self.feat_extract(x)


class DecisionDensenetModel(nn.Module):
    def __init__(self, num_classes=3, growth_rate=32, block_config=(6, 12, 24, 16),
                 num_init_features=64, bn_size=4):
        super().__init__()
        dn = torchvision.models.DenseNet(growth_rate=growth_rate, block_config=block_config,
                                         num_init_features=num_init_features, bn_size=bn_size)
        self.feat_extract = _DenseNetFeatures(dn)
        self.classifier = nn.Linear(self.feat_extract.output_size, num_classes)

    def forward(self, x):
        return self.classifier(self.feat_extract(x))  # logits


RESNET_DEPTHS = {
    18: (torchvision.models.resnet.BasicBlock, [2, 2, 2, 2]),
    34: (torchvision.models.resnet.BasicBlock, [3, 4, 6, 3]),
    50: (torchvision.models.resnet.Bottleneck, [3, 4, 6, 3]),
    101: (torchvision.models.resnet.Bottleneck, [3, 4, 23, 3]),
    152: (torchvision.models.resnet.Bottleneck, [3, 8, 36, 3]),
}


class ReducedResNet(torchvision.models.ResNet):
    """torchvision's ResNet with stem width `width` instead of 64 (layer widths w, 2w, 4w,
    8w): the same module tree, built by torchvision's own `_make_layer` and blocks, for
    fixtures small enough to commit. `width=64` is torchvision's ResNet exactly."""

    def __init__(self, block, layers, width=64, num_classes=1000,
                 replace_stride_with_dilation=None):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        rswd = replace_stride_with_dilation or [False, False, False]
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2, dilate=rswd[0])
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2, dilate=rswd[1])
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2, dilate=rswd[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * block.expansion, num_classes)


class DecisionResnetModel(nn.Module):
    def __init__(self, num_classes=3, depth=18, block=None, layers=None, width=64):
        super().__init__()
        if block is None:
            block, layers = RESNET_DEPTHS[depth]
        if width == 64 and layers == RESNET_DEPTHS.get(depth, (None, None))[1]:
            self.resnet = torchvision.models.ResNet(block, layers)
        else:
            self.resnet = ReducedResNet(block, layers, width)
        self.resnet.fc = nn.Linear(self.resnet.fc.in_features, num_classes)

    def forward(self, x):
        return self.resnet(x)  # logits


def randomize_bn(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5, generator=gen)
                    m.bias.normal_(0, 0.2, generator=gen)
    return model.eval()


# --------------------------------------------------------------------------------------------
# The published optimisation loop (generate_counterfactuals.py), on these modules
# --------------------------------------------------------------------------------------------


def published_loop(g, dm, image, seg, attr, steps, lr=0.01, lambda_prox=0.3, regions=()):
    """Returns (z, probs, flip, prox) as the published loop leaves them: general `z` after
    `steps` updates; region-targeted `z` rebuilt at the top of the last iteration (after
    `steps - 1` updates); probabilities and both losses from the last forward (after
    `steps - 1` updates)."""
    initial = torch.sigmoid(dm(image))
    target = (initial[:, attr] < 0.5).double()
    style = g.encode(image, seg).detach()
    B, L = style.shape[0], style.shape[1]
    if not regions:
        z = style.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
    else:
        z_list, z_opt = [], []
        for j in range(B):
            for i in range(L):
                sc = style[j, i].detach().clone()
                if i in regions:
                    sc.requires_grad = True
                    z_opt.append(sc)
                z_list.append(sc)
        z = torch.vstack(z_list).reshape(B, L, -1)
        opt = torch.optim.Adam(z_opt, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        if regions:
            z = torch.vstack(z_list).reshape(B, L, -1)
        logits = dm(g.generate(seg, z))
        probs = torch.sigmoid(logits)
        s = torch.sigmoid(logits[:, attr])
        flip = -(1 - target) * torch.log(1 - s) - target * torch.log(s)
        prox = lambda_prox * torch.sum(torch.square(torch.norm(z - style, dim=2)), axis=1)
        (flip + prox).sum().backward()
        opt.step()
    return z.detach(), probs.detach(), flip.detach(), prox.detach(), target


def settings_loop(g, dm, image, seg, attr, steps, lr=0.01, lambda_prox=0.3, regions=(),
                  target=None, early_stop=None):
    """The published loop (as `published_loop`) with the settings `steex explain` adds:
    `target` (0 or 1) instead of the opposite of the query's decision, and `early_stop` K:
    before each update, a forward whose decision has reached the target K times in a row
    ends the loop. Returns (z after the last update, number of updates, target)."""
    initial = torch.sigmoid(dm(image))
    if target is None:
        target = float(initial[0, attr] < 0.5)
    t = torch.tensor([float(target)], dtype=image.dtype)
    style = g.encode(image, seg).detach()
    L = style.shape[1]
    rows = [style[0, i].detach().clone().requires_grad_(not regions or i in regions) for i in range(L)]
    opt = torch.optim.Adam([r for r in rows if r.requires_grad], lr=lr)
    streak, updates = 0, 0
    for _ in range(steps):
        opt.zero_grad()
        z = torch.stack(rows).unsqueeze(0)
        logits = dm(g.generate(seg, z))
        s = torch.sigmoid(logits[:, attr])
        streak = streak + 1 if bool((s > 0.5).double() == t) else 0
        if early_stop and streak >= early_stop:
            break
        flip = -(1 - t) * torch.log(1 - s) - t * torch.log(s)
        prox = lambda_prox * torch.sum(torch.square(torch.norm(z - style, dim=2)), axis=1)
        (flip + prox).sum().backward()
        opt.step()
        updates += 1
    return torch.stack(rows).unsqueeze(0).detach(), updates, int(target)
