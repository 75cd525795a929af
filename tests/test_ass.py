"""ASS (Wang et al., CVPR-W 2020): the discriminators' shapes and 2c layout, Eq. 4's class means,
each adversarial loss (Eq. 2-3, 5-8) by hand for G's and D's side, the two update groups, exact
resume with both optimisers, and short runs of every variant on the embedded world."""
import math

import pytest
import torch

from unisemi.config import ConfigError, load_config
from unisemi.losses import IGNORE_INDEX
from unisemi.methods import ass
from unisemi.train import fit

V = IGNORE_INDEX
TINY = ["data.size=[32, 64]", "data.n_labelled=8", "data.batch_size=2", "data.unlabelled_batch_size=2",
        "data.val_images=4", "model.width=8", "train.iterations=6", "train.eval_every=3",
        "train.threads=1", "train.progress=false", "ass.gd_width=4", "ass.hidden=16"]


def nls(x):
    """-log softmax by hand, on a list of logits."""
    z = sum(math.exp(v) for v in x)
    return [-(v - math.log(z)) for v in x]


def softplus(x):
    return math.log1p(math.exp(x))


class Fixed:
    """A stand-in discriminator that returns given logits whatever its input (shape checks aside)."""

    def __init__(self, logits):
        self.logits = torch.as_tensor(logits)

    def __call__(self, x):
        return self.logits


# ---------------------------------------------------------------------------------------------
# shapes and layout

def test_discriminator_shapes():
    d_g = ass.global_discriminator(19, 8, 0.2)
    assert d_g(torch.rand(2, 19, 64, 128)).shape == (2, 1, 2, 4)      # five stride-2 convs: /32
    fc = ass.semantic_discriminator("fcsa", 32, 19, 1024, 0.2)
    assert fc(torch.rand(3, 19, 32)).shape == (3, 19, 38)              # one 2c row per V^k
    assert [m.out_features for m in fc if isinstance(m, torch.nn.Linear)] == [1024, 38]
    cnn = ass.semantic_discriminator("csa", 32, 19, 1024, 0.2)
    assert cnn(torch.rand(2, 32, 8, 16)).shape == (2, 38, 8, 16)       # 2c logits per pixel
    assert [m.kernel_size for m in cnn if isinstance(m, torch.nn.Conv2d)] == [(1, 1), (1, 1)]
    assert all(m.negative_slope == 0.2 for m in [*fc, *cnn, *d_g] if isinstance(m, torch.nn.LeakyReLU))


def test_the_2c_layout_source_half_then_target_half():
    # c = 2, one image, only class 1 present. D_s puts all its mass on channel 1 ("source, class
    # 1"): it is right about the source vector (D's source loss ~0) and G is far from fooling it.
    big = [[-50.0, 50.0, -50.0, -50.0]] * 2                 # rows: class 0, class 1
    v = torch.zeros(1, 2, 3)
    present = torch.tensor([[False, True]])
    g, d = ass.fcsa_terms(Fixed([big]), v, present, v, present)
    assert g.item() == pytest.approx(100.0, abs=1e-3)           # -log p(channel 1 + c = 3)
    assert d.item() == pytest.approx(0.0 + 100.0, abs=1e-3)     # source right, target wrong
    # mass on channel 1 + c = 3, "target, class 1": G fools it, and D is right on the target
    fooled = [[-50.0, -50.0, -50.0, 50.0]] * 2
    g, d = ass.fcsa_terms(Fixed([fooled]), v, present, v, present)
    assert g.item() == pytest.approx(0.0, abs=1e-3) and d.item() == pytest.approx(100.0, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Eq. 4

def test_class_means_by_hand_with_an_absent_class_and_void_pixels():
    # two images, n = 2 channels, 2 x 2 pixels, c = 3
    f = torch.tensor([[[[1., 2.], [3., 4.]], [[10., 20.], [30., 40.]]],
                      [[[5., 6.], [7., 8.]], [[50., 60.], [70., 80.]]]])
    y = torch.tensor([[[0, 0], [1, V]],          # image 0: class 0 at (1, 2), class 1 at 3, void
                      [[2, V], [V, 2]]])          # image 1: class 2 only (5 and 8), two void
    means, present = ass.class_means(f, y, 3)
    assert present.tolist() == [[True, True, False], [False, False, True]]
    assert means[0, 0].tolist() == [1.5, 15.0]
    assert means[0, 1].tolist() == [3.0, 30.0]
    assert means[1, 2].tolist() == [6.5, 65.0]
    assert means[0, 2].tolist() == [0.0, 0.0] and means[1, 0].tolist() == [0.0, 0.0]   # absent
    # the mean is differentiable in F: each pixel's weight is 1 / (its class's count)
    f.requires_grad_(True)
    ass.class_means(f, y, 3)[0][0, 0, 0].backward()
    assert f.grad[0, 0].tolist() == [[0.5, 0.5], [0.0, 0.0]] and f.grad[1].abs().sum() == 0


def test_down_is_nearest_at_the_feature_resolution():
    y = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [V, V, 2, 2], [V, V, 2, 2]]])
    assert ass.down(y, (2, 2)).tolist() == [[[0, 1], [V, 2]]]


# ---------------------------------------------------------------------------------------------
# the adversarial losses by hand

def test_global_adversarial_losses_by_hand():
    s, t = [[[[0.5, -1.0]]]], [[[[2.0, 0.0]]]]
    p = torch.zeros(1, 19, 4, 4)
    # Eq. 2: G wants D_g(P_s) = 1 ("target"): mean over cells of -log sigmoid(l) = softplus(-l)
    g = ass.ga_generator(Fixed(s), p)
    assert g.item() == pytest.approx((softplus(-0.5) + softplus(1.0)) / 2, rel=1e-6)

    # Eq. 3: D_g wants 0 on the source (-log(1 - sigmoid) = softplus(l)), 1 on the target
    class Switch:                      # returns the source logits, then the target ones
        def __init__(self):
            self.calls = []

        def __call__(self, x):
            self.calls.append(x)
            return torch.tensor(s if len(self.calls) == 1 else t)

    sw = Switch()
    ps, pt = torch.rand(1, 19, 4, 4, requires_grad=True), torch.rand(1, 19, 4, 4, requires_grad=True)
    d = ass.ga_discriminator(sw, ps, pt)
    want = (softplus(0.5) + softplus(-1.0)) / 2 + (softplus(-2.0) + softplus(0.0)) / 2
    assert d.item() == pytest.approx(want, rel=1e-6)
    assert not sw.calls[0].requires_grad and not sw.calls[1].requires_grad   # D's loss: G detached


def test_fcsa_losses_by_hand():
    c = 2
    rows_s = [[1.0, 0.0, 2.0, -1.0], [0.5, 0.5, 0.0, 3.0]]       # D_s(V_s^k), k = 0, 1
    rows_t = [[0.0, 1.0, 1.0, 0.0], [2.0, 0.0, 0.0, 1.0]]
    present_s = torch.tensor([[True, True]])
    present_t = torch.tensor([[False, True]])                      # class 0 absent from the target

    class SrcThenTgt:
        def __init__(self):
            self.n = 0

        def __call__(self, v):
            self.n += 1
            # calls: G's source pass, D's source pass, D's target pass
            return torch.tensor([rows_t if self.n == 3 else rows_s])

    v = torch.zeros(1, c, 3, requires_grad=True)
    g, d = ass.fcsa_terms(SrcThenTgt(), v, present_s, v, present_t)
    # Eq. 5: -log D_s(V_s^k)^(k + c), mean over the present source classes
    assert g.item() == pytest.approx((nls(rows_s[0])[2] + nls(rows_s[1])[3]) / 2, rel=1e-6)
    # Eq. 6: source classes to channel k, target classes to k + c; absent classes count nowhere
    want = (nls(rows_s[0])[0] + nls(rows_s[1])[1]) / 2 + nls(rows_t[1])[3]
    assert d.item() == pytest.approx(want, rel=1e-6)


def test_csa_losses_by_hand():
    c = 2
    # one image, 1 x 3 pixels labelled [1, void, 0]; logits (1, 2c, 1, 3) per pixel
    px = [[0.0, 1.0, 2.0, 0.5], [9.0, 9.0, 9.0, 9.0], [1.0, -1.0, 0.0, 2.0]]
    logits = torch.tensor(px).t().reshape(1, 4, 1, 3)
    y = torch.tensor([[[1, V, 0]]])
    f = torch.zeros(1, 5, 1, 3)
    g, d = ass.csa_terms(Fixed(logits), f, y, f, y, c)
    # Eq. 7: -log D_s(F_s)^(k + c) at the non-void pixels, k their class
    assert g.item() == pytest.approx((nls(px[0])[3] + nls(px[2])[2]) / 2, rel=1e-6)
    # Eq. 8: source pixels to k, the labelled target's to k + c
    want = (nls(px[0])[1] + nls(px[2])[0]) / 2 + (nls(px[0])[3] + nls(px[2])[2]) / 2
    assert d.item() == pytest.approx(want, rel=1e-6)
    # an all-void batch gives 0, not NaN (a rank without labelled pixels still averages gradients)
    g, d = ass.csa_terms(Fixed(logits), f, torch.full_like(y, V), f, torch.full_like(y, V), c)
    assert g.item() == 0.0 and d.item() == 0.0


def test_d_sides_do_not_reach_g_and_g_sides_reach_d():
    d_s = ass.semantic_discriminator("csa", 4, 3, 8, 0.2)
    f = torch.randn(1, 4, 2, 2, requires_grad=True)
    y = torch.tensor([[[0, 1], [2, V]]])
    g, d = ass.csa_terms(d_s, f, y, f, y, 3)
    assert torch.autograd.grad(d, f, allow_unused=True)[0] is None        # detached G outputs
    assert all(x is not None for x in torch.autograd.grad(g, list(d_s.parameters())))


# ---------------------------------------------------------------------------------------------
# config and groups

def test_config_defaults_groups_and_checks():
    cfg = load_config("ass_game_city", TINY)
    a = cfg.ass
    assert (a.lambda_seg, a.lambda_gadv, a.d_lr, tuple(a.d_betas), a.hidden, a.leaky_slope) == \
        (1.0, 0.001, 1e-4, (0.9, 0.99), 16, 0.2)
    from unisemi.models import build_model
    model = build_model(cfg.model, {"city": 19})
    state = ass.build(cfg, model)
    seg, disc = ass.groups(cfg, model, state)
    assert seg.name == "seg" and seg.optimizer == "sgd" and seg.nesterov and seg.momentum == 0.9
    assert seg.weight_decay == 5e-4 and seg.poly_power == 0.9
    assert disc.optimizer == "adam" and disc.lr == 1e-4 and disc.betas == (0.9, 0.99)
    assert {id(p) for p in disc.parameters()} == {id(p) for p in state.parameters()}
    assert not {id(p) for p in seg.parameters()} & {id(p) for p in disc.parameters()}
    with pytest.raises(ConfigError, match="ass.variant"):
        load_config("ass_game_city", TINY + ["ass.variant=both"])
    with pytest.raises(ConfigError, match="ass.source_domain"):        # CamVid's merged classes
        load_config("ass_game_city", TINY + ["ass.source_domain=town"])
    with pytest.raises(ConfigError, match="ass.lambda_sadv"):
        load_config("ass_game_city", TINY + ["ass.lambda_sadv=-1"])


# ---------------------------------------------------------------------------------------------
# the loop

def one_step(*extra):
    cfg = load_config("ass_game_city", TINY + ["train.iterations=1", "train.eval_every=1", *extra])
    r = fit(cfg)
    return r["model"].state_dict(), r["state"].state_dict()


def differs(a, b):
    return any(not torch.equal(v, b[k]) for k, v in a.items())


@pytest.mark.parametrize("variant", ["fcsa", "csa"])
def test_one_step_of_each_group_moves_only_its_own_parameters(variant):
    v = f"ass.variant={variant}"
    base_model, base_disc = one_step(v)
    # D's loss changed (no L_sd): G's step is bit-identical, D's is not
    model, disc = one_step(v, "ass.lambda_sd=0")
    assert not differs(base_model, model) and differs(base_disc, disc)
    # G's adversarial terms changed: D's step is bit-identical, G's is not
    model, disc = one_step(v, "ass.lambda_gadv=0", "ass.lambda_sadv=0")
    assert not differs(base_disc, disc) and differs(base_model, model)


def test_a_resumed_run_equals_the_uninterrupted_one_with_both_optimizers(tmp_path, monkeypatch):
    from test_resume import assert_same_optimizer, assert_same_tensors
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path / "cache"))
    cfg = load_config("ass_game_city", TINY + ["ass.variant=fcsa"])
    straight = fit(cfg)
    first = fit(cfg, out_dir=tmp_path / "run", stop_after=3)
    assert first["final"]["iteration"] == 3
    resumed = fit(cfg, resume=tmp_path / "run")
    assert resumed["final"]["resumed_from"] == 3
    assert_same_tensors(straight["model"].state_dict(), resumed["model"].state_dict(), "model")
    assert_same_tensors(straight["state"].state_dict(), resumed["state"].state_dict(), "discriminators")
    assert set(straight["optimizers"]) == {"seg", "disc"}
    for name, opt in straight["optimizers"].items():
        sd = opt.state_dict()
        assert sd["state"], name                     # the moments exist: the check is not vacuous
        assert_same_optimizer(sd, resumed["optimizers"][name].state_dict(), f"optimizer {name}")
    assert straight["optimizers"]["seg"].state_dict()["param_groups"][0]["nesterov"]
    assert "exp_avg_sq" in straight["optimizers"]["disc"].state_dict()["state"][0]
    assert straight["final"]["loss"] == resumed["final"]["loss"]


TERMS = {"none": {"seg:seg/game", "seg:seg/city", "seg:gadv", "disc:gd"},
         "fcsa": {"seg:seg/game", "seg:seg/city", "seg:gadv", "seg:sadv", "disc:gd", "disc:sd"},
         "oracle": {"seg:seg/city"}}
TERMS["csa"] = TERMS["fcsa"]


@pytest.mark.parametrize("variant", ["none", "fcsa", "csa", "oracle"])
def test_a_short_run_on_the_embedded_world_is_finite(variant):
    extra = ["ass.source_domain=", "ass.variant=none"] if variant == "oracle" else [f"ass.variant={variant}"]
    r = fit(load_config("ass_game_city", TINY + extra))
    loss = r["final"]["loss"]
    assert set(loss) == TERMS[variant]
    assert all(math.isfinite(x) for x in loss.values()), loss
    assert all(torch.isfinite(p).all() for p in r["model"].parameters())
    assert math.isfinite(r["final"]["miou_mean"])
    if variant != "oracle":           # D has learnt something: its loss is off the untrained ln 4
        assert loss["disc:gd"] != pytest.approx(2 * math.log(2), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# multi-level GA (AdaptSegNet's second level on layer3)

def ce_by_hand(pixels, labels):
    """Mean pixel CE over the non-void pixels; pixels = per-pixel logit lists."""
    vals = [nls(p)[y] for p, y in zip(pixels, labels) if y != V]
    return sum(vals) / len(vals)


def test_multi_level_terms_by_hand():
    from types import SimpleNamespace
    # 2 classes, images of 1 x 3 pixels; aux_t holds 1 labelled then 1 unlabelled target image
    src_px = [[1.0, -1.0], [0.0, 2.0], [5.0, 5.0]]
    tl_px, tu_px = [[0.5, 0.0], [-1.0, 1.0], [2.0, 0.0]], [[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]

    def maps(*images):          # per-pixel logit lists -> (B, 2, 1, 3)
        return torch.tensor(images).permute(0, 2, 1).reshape(len(images), 2, 1, 3)
    aux_s, aux_t = maps(src_px), maps(tl_px, tu_px)
    y_s, y_tl = torch.tensor([[[0, 1, V]]]), torch.tensor([[[1, V, 0]]])
    s, t = [[[[0.5, -1.0]]]], [[[[2.0, 0.0]]]]

    class Recorder:             # D_aux: the source logits on the 1st and 2nd call, the target's on the 3rd
        def __init__(self):
            self.calls = []

        def __call__(self, x):
            self.calls.append(x)
            return torch.tensor(t if len(self.calls) == 3 else s)

    d_aux = Recorder()
    settings = ass.Config(source_domain="game", lambda_seg_aux=0.1, lambda_gadv_aux=0.0002, lambda_gd=2.0)
    state = SimpleNamespace(settings=settings, target="city", d_aux=d_aux)
    seg, disc = ass.multi_level_terms(state, aux_s, y_s, aux_t, y_tl, 1)
    assert set(seg) == {"seg_aux/game", "seg_aux/city", "gadv_aux"} and set(disc) == {"gd_aux"}
    # the auxiliary Eq. 1 at AdaptSegNet's 0.1, on the source and on the labelled target
    assert seg["seg_aux/game"].item() == pytest.approx(0.1 * ce_by_hand(src_px, [0, 1, V]), rel=1e-6)
    assert seg["seg_aux/city"].item() == pytest.approx(0.1 * ce_by_hand(tl_px, [1, V, 0]), rel=1e-6)
    # Eq. 2 through D_aux at 0.0002: -log sigmoid(l) = softplus(-l), mean over the cells
    assert seg["gadv_aux"].item() == pytest.approx(0.0002 * (softplus(-0.5) + softplus(1.0)) / 2, rel=1e-6)
    # Eq. 3 through D_aux, weighted by lambda_gd: source to 0, the unlabelled target to 1
    want = (softplus(0.5) + softplus(-1.0)) / 2 + (softplus(-2.0) + softplus(0.0)) / 2
    assert disc["gd_aux"].item() == pytest.approx(2.0 * want, rel=1e-6)
    # D_aux sees the auxiliary softmax maps: G's on the source, then D's detached source and the
    # unlabelled target (not the labelled one)
    g_in, d_src, d_tgt = d_aux.calls
    assert torch.equal(g_in, aux_s.softmax(1)) and torch.equal(d_src, aux_s.softmax(1))
    assert torch.equal(d_tgt, aux_t[1:].softmax(1))
    # #City = 0: no labelled target batch, no labelled-target auxiliary term
    seg, _ = ass.multi_level_terms(SimpleNamespace(settings=settings, target="city", d_aux=Recorder()),
                                   aux_s, y_s, aux_t[1:], y_tl[:0], 0)
    assert set(seg) == {"seg_aux/game", "gadv_aux"}


def test_every_encoder_returns_layer3_as_mid_and_its_other_outputs_as_before():
    """"mid" is the stage before the last (ResNet layer3), `mid_channels` wide, and "out" is the
    last stage applied to it: the tensors the forward computed before, no new parameter."""
    from unisemi.models.encoders import ENCODERS
    for name, build in ENCODERS.items():
        with torch.device("meta"):
            enc = build(8, 8 if name == "tiny" else 64)
            out = enc(torch.empty(1, 3, 64, 64))
        assert set(out) == {"low", "mid", "out"}, name
        assert out["mid"].shape[1] == enc.mid_channels, name
    enc = ENCODERS["resnet18"](8).eval()
    assert sum(p.numel() for p in enc.parameters()) == 11176512      # torchvision's resnet18 less fc
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        f = enc(x)
        assert torch.equal(f["mid"], enc.layer3(enc.layer2(f["low"])))
        assert torch.equal(f["out"], enc.layer4(f["mid"]))


def ml_cfg(*extra):
    return load_config("ass_game_city", TINY + ["ass.multi_level=true", *extra])


def test_multi_level_state_groups_and_forward():
    from unisemi.models import build_model
    cfg = ml_cfg("optim.head_lr_mult=10")
    model = build_model(cfg.model, {"city": 19})
    state = ass.build(cfg, model)
    assert state.d_aux is not None and type(state.aux_head) is type(model.heads["city"])
    assert state.aux_head.classifier.in_channels == model.encoder.mid_channels
    seg, disc = ass.groups(cfg, model, state)
    aux = {id(p) for p in state.aux_head.parameters()}
    assert seg.params[-1]["lr_mult"] == 10 and {id(p) for p in seg.params[-1]["params"]} == aux
    assert {id(p) for p in disc.parameters()} == {id(p) for n, p in state.named_parameters()
                                                  if not n.startswith("aux_head.")}
    assert {id(p) for p in state.d_aux.parameters()} <= {id(p) for p in disc.parameters()}
    x = torch.randn(2, 3, 32, 64)
    model.eval()
    with torch.no_grad():
        out, aux_logits = ass.forward_levels(model, state.aux_head, x, "city")
        assert torch.equal(out["logits"], model(x, "city")["logits"])
        mid = model.encoder(x)["mid"]
        want = torch.nn.functional.interpolate(state.aux_head.classifier(mid), size=(32, 64),
                                               mode="bilinear", align_corners=False)
    assert torch.equal(aux_logits, want)
    # the Oracle has no adversarial level: nothing is built
    oracle = ass.build(ml_cfg("ass.source_domain=", "ass.variant=none"), model)
    assert oracle.aux_head is None and oracle.d_aux is None
    with pytest.raises(ConfigError, match="ass.lambda_seg_aux"):
        ml_cfg("ass.lambda_seg_aux=-0.1")


# The single-level step as it was before multi-level GA existed: losses of a fixed-seed 3-step run,
# recorded at 4d401b3 (torch 2.13 CPU) and reproduced bit for bit with ass.multi_level false.
BEFORE = {
    "none": {"seg:seg/game": 2.351226488749186, "seg:seg/city": 2.486896355946859,
             "seg:gadv": 0.0006841549184173346, "disc:gd": 1.386374791463216},
    "csa": {"seg:seg/game": 2.350984255472819, "seg:seg/city": 2.4879627227783203,
            "seg:gadv": 0.0006841540647049745, "seg:sadv": 0.03655600547790527,
            "disc:gd": 1.3863732020060222, "disc:sd": 7.619210561116536},
}


@pytest.mark.parametrize("variant", sorted(BEFORE))
def test_single_level_is_the_step_from_before_bit_for_bit(variant):
    cfg = load_config("ass_game_city", TINY + [f"ass.variant={variant}", "train.iterations=3",
                                               "train.eval_every=3", "ass.multi_level=false"])
    r = fit(cfg)
    assert r["final"]["loss"] == BEFORE[variant]
    assert r["state"].aux_head is None and not any(k.startswith(("aux_head", "d_aux")) for k in r["state"].state_dict())


def test_multi_level_groups_keep_to_their_own_parameters():
    base_model, base_disc = one_step("ass.multi_level=true")
    assert any(k.startswith("aux_head.") for k in base_disc) and any(k.startswith("d_aux.") for k in base_disc)
    # G's auxiliary adversarial term off: D's step (D_g, D_aux) bit-identical, G's (model, aux) not
    model, disc = one_step("ass.multi_level=true", "ass.lambda_gadv_aux=0")
    assert differs(base_model, model)
    assert not differs({k: v for k, v in base_disc.items() if not k.startswith("aux_head.")},
                       {k: v for k, v in disc.items() if not k.startswith("aux_head.")})
    # the auxiliary L_seg off: the auxiliary classifier and G move differently, D does not
    model, disc = one_step("ass.multi_level=true", "ass.lambda_seg_aux=0")
    assert differs(base_model, model)
    assert differs({k: v for k, v in base_disc.items() if k.startswith("aux_head.")},
                   {k: v for k, v in disc.items() if k.startswith("aux_head.")})
    assert not differs({k: v for k, v in base_disc.items() if not k.startswith("aux_head.")},
                       {k: v for k, v in disc.items() if not k.startswith("aux_head.")})


def test_a_multi_level_run_resumes_exactly_in_every_tensor(tmp_path, monkeypatch):
    from test_resume import assert_same_optimizer, assert_same_tensors
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path / "cache"))
    cfg = ml_cfg("ass.variant=csa", "optim.head_lr_mult=10")
    straight = fit(cfg)
    fit(cfg, out_dir=tmp_path / "run", stop_after=3)
    resumed = fit(cfg, resume=tmp_path / "run")
    assert resumed["final"]["resumed_from"] == 3
    assert_same_tensors(straight["model"].state_dict(), resumed["model"].state_dict(), "model")
    state = straight["state"].state_dict()
    assert {k.split(".")[0] for k in state} == {"d_global", "d_semantic", "aux_head", "d_aux"}
    assert_same_tensors(state, resumed["state"].state_dict(), "method state")
    for name, opt in straight["optimizers"].items():
        sd = opt.state_dict()
        assert sd["state"], name
        assert_same_optimizer(sd, resumed["optimizers"][name].state_dict(), f"optimizer {name}")
    assert [g["lr_mult"] for g in straight["optimizers"]["seg"].state_dict()["param_groups"]] == [1.0, 10, 10]
    loss = straight["final"]["loss"]
    assert loss == resumed["final"]["loss"]
    assert {"seg:seg_aux/game", "seg:seg_aux/city", "seg:gadv_aux", "disc:gd_aux"} <= set(loss)
    assert all(math.isfinite(v) for v in loss.values())


def test_multi_level_step_flops_add_the_auxiliary_classifier_and_d_aux():
    import dataclasses
    from unisemi.ablation import cost
    cfg = load_config("ass_game_city", TINY + ["ass.variant=csa"])
    single, s_terms, _ = cost.flops_per_step(cfg)
    multi, m_terms, _ = cost.flops_per_step(dataclasses.replace(cfg, ass=dataclasses.replace(cfg.ass, multi_level=True)))
    added = [t for t in m_terms if t.what not in {x.what for x in s_terms}]
    assert [t.what.split()[0] for t in added] == ["auxiliary", "D_aux"]
    d_g = next(t for t in s_terms if t.what.startswith("D_g"))
    assert added[1].flops == d_g.flops                          # the same net on maps of the same size
    # the tiny net's FCN head: one 1x1 conv (mid_channels 32 -> 19 classes) at the 4 x 8 pixels of
    # a 32x64 image at stride 8, on 2 source + 2 + 2 target images, fwd + bwd (input and weight
    # gradients: 3x the forward; the counter prices no bilinear upsampling)
    conv = 2 * 32 * 19 * (4 * 8)
    assert added[0].flops == 6 * 3 * conv
    assert multi == single + added[0].flops + added[1].flops
