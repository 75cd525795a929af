"""The universal method (Kalluri et al. 2019): entropy terms, K centroids, label embeddings,
the centroid EMA and the per-domain heads, each on a case checked by hand."""
import math

import pytest
import torch

from unisemi.config import load_config
from unisemi.methods import universal as U
from unisemi.methods.universal.embeddings import class_centroids, kmeans, pca, pixel_embeddings
from unisemi.train import fit, prior_stages

TINY = ["data.size=[32, 64]", "data.n_labelled=8", "data.batch_size=2", "data.unlabelled_batch_size=2",
        "data.val_images=4", "model.width=8", "train.iterations=6", "train.eval_every=3",
        "train.threads=1", "train.progress=false", "universal.init=random", "universal.embed_dim=4"]


def _entropy(p):
    return -sum(x * math.log(x) for x in p)


def _cfg(*extra):
    return load_config("universal_city_town", TINY + list(extra))


def test_within_and_cross_entropy_by_hand():
    cfg = _cfg()
    state = type("S", (), {})()
    state.domains = ["a", "b"]
    cents = {"a": torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]),                  # 2 classes
             "b": torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]])}    # 3 classes
    state.centroids = lambda d: cents[d]
    emb = {"a": torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)}
    out = U.entropy_terms(emb, state, cfg)
    e = math.e
    # within a: scores [1, 0]; cross a->b: scores [2, 0, 0]
    assert out["within/a"].item() == pytest.approx(_entropy([e / (e + 1), 1 / (e + 1)]))
    z = e ** 2 + 2
    assert out["cross/a->b"].item() == pytest.approx(_entropy([e ** 2 / z, 1 / z, 1 / z]))


def test_k_centroids_pool_with_logsumexp_or_max():
    c = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, -1.0]]])      # 2 classes, K = 2
    emb = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    s = U.scores(emb, c, _cfg("universal.centroids=2")).flatten()
    assert s.tolist() == pytest.approx([math.log(math.e + 1), math.log(math.exp(-1) + 1)])
    s = U.scores(emb, c, _cfg("universal.centroids=2", "universal.k_pooling=max")).flatten()
    assert s.tolist() == pytest.approx([1.0, 0.0])


def test_cosine_variant_and_released_normalised_embeddings():
    c = torch.tensor([[[3.0, 0.0]], [[0.0, 0.5]]])
    emb = torch.tensor([10.0, 0.0]).view(1, 2, 1, 1)
    cos = U.scores(emb, c, _cfg("universal.similarity=cosine", "universal.temperature=0.5")).flatten()
    assert cos.tolist() == pytest.approx([2.0, 0.0])                # (1, 0) / 0.5
    rel = U.scores(emb, c, _cfg("universal.released_normalised_label_embeddings=true")).flatten()
    assert rel.tolist() == pytest.approx([10.0, 0.0])               # unit embeddings, raw pixels
    assert U.scores(emb, c, _cfg()).flatten().tolist() == pytest.approx([30.0, 0.0])


def test_pca_and_class_means_recover_planted_centres():
    torch.manual_seed(0)
    centres = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    basis = torch.linalg.qr(torch.randn(16, 2)).Q.T                # a 2-D subspace of R^16
    labels = torch.arange(3).repeat_interleave(200)
    x = (centres[labels] + 0.05 * torch.randn(600, 2)) @ basis
    mean, comps = pca(x, 2)
    means = class_centroids((x - mean) @ comps.T, labels, 3).squeeze(1)
    # PCA is a rotation/reflection of the centred plane: pairwise distances survive
    assert torch.allclose(torch.cdist(means, means), torch.cdist(centres, centres), atol=0.05)


def test_kmeans_with_k2_recovers_two_planted_clusters():
    torch.manual_seed(0)
    planted = torch.tensor([[5.0, 5.0], [-5.0, 1.0]])
    x = torch.cat([planted[0] + 0.1 * torch.randn(100, 2), planted[1] + 0.1 * torch.randn(100, 2)])
    found = kmeans(x, 2, seed=3)
    order = torch.cdist(planted, found).argmin(1)
    assert sorted(order.tolist()) == [0, 1]
    assert torch.allclose(found[order], planted, atol=0.05)


def test_pixel_embeddings_upsample_to_label_resolution_and_drop_void():
    feats = torch.arange(4.0).view(1, 1, 2, 2)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = 255
    labels[0, 3, 3] = 7
    rows, lab = pixel_embeddings(feats, labels)
    # feats is f(y, x) = 2y + x on a 2x2 grid; bilinear upsampling (half-pixel centres) to 4x4
    # samples it at source coordinates (i + 0.5) / 2 - 0.5, clamped: 0, 0.25, 0.75, 1
    r = [0.0, 0.25, 0.75, 1.0]
    expected = [2 * r[i] + r[j] for i in range(4) for j in range(4)][1:]     # void (0, 0) dropped
    assert rows.shape == (15, 1) and torch.allclose(rows[:, 0], torch.tensor(expected))
    assert lab.tolist() == [0] * 14 + [7]
    # with a PCA (mean, components) the rows are the projected features, upsampled the same way
    rows2, _ = pixel_embeddings(feats, labels, torch.tensor([1.0]), torch.tensor([[-2.0]]))
    assert torch.allclose(rows2[:, 0], -2.0 * (torch.tensor(expected) - 1.0))


def test_gamma_fixes_replaces_or_interpolates_centroids():
    old, new = torch.zeros(2, 1, 3), torch.ones(2, 1, 3)
    assert torch.equal(U.ema_centroids(old, new, 1.0), old)
    assert torch.equal(U.ema_centroids(old, new, 0.0), new)
    assert torch.allclose(U.ema_centroids(old, new, 0.25), torch.full((2, 1, 3), 0.75))


def _setup(*extra):
    cfg = _cfg(*extra)
    from unisemi.data import load_domain
    from unisemi.models import build_model
    torch.manual_seed(0)
    dds = {d: load_domain(cfg.data, d) for d in cfg.data.domains}
    model = build_model(cfg.model, {d: U.head_classes(cfg, d, dd.num_classes) for d, dd in dds.items()})
    state = U.build(cfg, model, prior_stages(cfg))
    return cfg, model, state, dds


def test_centroid_update_follows_gamma():
    for gamma in (1.0, 0.0):
        cfg, model, state, dds = _setup(f"universal.gamma={gamma}", "universal.update_every=1")
        before = state.centroids("town").clone()
        U.update(model, state, {}, 0)
        after = state.centroids("town")
        if gamma == 1.0:
            assert torch.equal(after, before)
        else:
            expected = U.current_centroids(model, state, "town")
            assert torch.allclose(after, expected) and not torch.allclose(after, before)


def test_an_image_of_one_domain_never_trains_the_other_domains_head():
    cfg, model, state, dds = _setup()
    from unisemi.data.transforms import normalize
    x, y = dds["city"].fetch("train", dds["city"].labelled[:2])
    xu, _ = dds["city"].fetch("train", dds["city"].unlabelled[:2])
    batch = {"labelled": {"city": (normalize(x), y.long())}, "unlabelled": {"city": normalize(xu)}}
    terms = U.losses(model, state, batch, 0)
    assert {"sup/city", "within/city", "cross/city->town"} <= set(terms)
    sum(terms.values()).backward()
    assert all(p.grad is None or not p.grad.any() for p in model.heads["town"].parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.heads["city"].parameters())
    assert state.projection.weight.grad is not None


def test_univ_basic_skips_the_entropy_module():
    cfg, model, state, dds = _setup("universal.alpha=0", "universal.beta=0")
    from unisemi.data.transforms import normalize
    batch = {"labelled": {d: (normalize(dd.fetch("train", dd.labelled[:2])[0]),
                              dd.fetch("train", dd.labelled[:2])[1].long()) for d, dd in dds.items()},
             "unlabelled": {d: normalize(dd.fetch("train", dd.unlabelled[:2])[0]) for d, dd in dds.items()}}
    assert set(U.losses(model, state, batch, 0)) == {"sup/city", "sup/town"}


def test_short_univ_full_run_learns_and_scores_each_domain_in_its_own_label_space():
    cfg = _cfg("train.iterations=30", "train.eval_every=15", "optim.lr=0.05")
    res = fit(cfg)
    first, last = res["history"][0], res["history"][-1]
    assert set(last["domains"]) == {"city", "town"}
    assert len(last["domains"]["city"]["iou"]) == 19 and len(last["domains"]["town"]["iou"]) == 11
    assert sum(last["loss"].values()) < sum(first["loss"].values())


def test_pretrained_label_embeddings_are_built_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("UNISEMI_CACHE", str(tmp_path))
    cfg = _cfg("universal.init=pretrain", "universal.init_iterations=4")
    from unisemi.methods.universal.embeddings import pretrained_centroids
    stages = prior_stages(cfg)
    a = pretrained_centroids(cfg, "town", stages)
    files = list((tmp_path / "stages").glob("label-embeddings-*/centroids.pt"))
    assert len(files) == 1 and a.shape == (11, 1, 4)
    assert stages.used == {"label-embeddings/town": files[0].parent.name.split("-")[-1]}
    fits = []
    stages.fit = lambda values: fits.append(values)          # a second build would call it
    assert torch.equal(pretrained_centroids(cfg, "town", stages), a) and fits == []   # loaded
    files[0].write_bytes(b"not a tensor")
    with pytest.raises(RuntimeError, match="unreadable label-embedding stage.*stages rebuild label-embeddings-"):
        pretrained_centroids(cfg, "town", stages)


def test_label_embedding_file_errors_name_the_problem(tmp_path):
    path = tmp_path / "emb.pt"
    torch.save({"city": torch.zeros(19, 4)}, path)
    with pytest.raises(ValueError, match="no embeddings for domain 'town'"):
        _setup(f"universal.init={path}")
    torch.save({"city": torch.zeros(19, 4), "town": torch.zeros(5, 4)}, path)
    with pytest.raises(ValueError, match=r"domain 'town' has shape \(5, 1, 4\), expected"):
        _setup(f"universal.init={path}")


def test_finetune_trains_a_source_classifier_then_the_targets_own_head():
    from unisemi.methods import finetune as FT
    from unisemi.data import load_domain
    from unisemi.data.transforms import normalize
    from unisemi.models import build_model
    cfg = load_config("supervised_city", TINY + ["method=finetune", "finetune.source_domain=town",
                                                 "train.iterations=10"])
    torch.manual_seed(0)
    model = build_model(cfg.model, {"city": 19})
    state = FT.build(cfg, model)
    assert state.switch == 5
    src, tgt = load_domain(cfg.data, "town"), load_domain(cfg.data, "city")
    xs, ys = src.fetch("train", src.labelled[:2])
    xt, yt = tgt.fetch("train", tgt.labelled[:2])
    batch = {"labelled": {"town": (normalize(xs), ys.long()), "city": (normalize(xt), yt.long())}}
    terms = FT.losses(model, state, batch, step=4)
    assert set(terms) == {"source/town"}
    sum(terms.values()).backward()
    assert all(p.grad is None for p in model.heads["city"].parameters())   # target head untouched
    assert state.source_head.classifier.weight.grad is not None
    assert set(FT.losses(model, state, batch, step=5)) == {"sup/city"}


def test_spec_other_stands_for_the_other_tables_dataset(tmp_path):
    from conftest import tiny_spec
    from unisemi.ablation.spec import expand, load_spec
    p = tiny_spec(tmp_path, domains={"cs": "city", "cvd": "town"}, extra_levels={
        "ft": {"set": {"method": "finetune", "finetune.source_domain": "{other}"}, "per_domain": True}})
    trials, _ = expand(load_spec(str(p)), seeds=1)
    ft = {t.config["data"]["domains"][0]: t.config["finetune"]["source_domain"]
          for t in trials if t.cell_id == "variant=ft"}
    assert ft == {"city": "town", "town": "city"}


def test_viz_tsne_and_prediction_figures_from_two_checkpoints(tmp_path):
    from PIL import Image
    from unisemi.viz import main as viz
    for name, extra in (("basic", ["universal.alpha=0", "universal.beta=0"]), ("full", [])):
        fit(_cfg("train.iterations=3", "train.eval_every=3", *extra), out_dir=tmp_path / name)
    ck = ["--checkpoint", str(tmp_path / "basic"), "--checkpoint", str(tmp_path / "full")]
    assert viz(["viz", "tsne", *ck, "--images", "4", "--per-class", "20", "--out", str(tmp_path / "t.png")]) == 0
    assert Image.open(tmp_path / "t.png").size[0] > 500
    assert viz(["viz", "predictions", *ck, "--domain", "town", "--images", "2",
                "--out", str(tmp_path / "p.png")]) == 0
    # input | 2 predictions | ground truth, 2 images of 32x64, drawn at 2x
    assert Image.open(tmp_path / "p.png").size == (4 * 64 * 2, 2 * 32 * 2)


def _batch(dds):
    from unisemi.data.transforms import normalize
    lab = {d: dd.fetch("train", dd.labelled[:2]) for d, dd in dds.items()}
    return {"labelled": {d: (normalize(x), y.long()) for d, (x, y) in lab.items()},
            "unlabelled": {d: normalize(dd.fetch("train", dd.unlabelled[:2])[0]) for d, dd in dds.items()}}


def test_released_none_class_adds_one_output_per_head_and_none_by_default():
    for switch, extra in (("false", 0), ("true", 1)):
        cfg, model, state, dds = _setup(f"universal.released_none_class={switch}")
        batch = _batch(dds)
        for d, dd in dds.items():
            assert model.head_outputs[d] == dd.num_classes + extra
            assert model(batch["labelled"][d][0], d)["logits"].shape[1] == dd.num_classes + extra
            assert state.centroids(d).shape[0] == dd.num_classes     # no "None" label embedding


def test_released_none_class_ce_normalises_over_the_none_logit_and_ignores_void():
    cfg = _cfg("universal.released_none_class=true", "universal.alpha=0", "universal.beta=0")
    # 3 pixels of a 2-class domain, 3 outputs (the last "None"); the third pixel is void
    logits = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [5.0, 0.0, 9.0]]).T.reshape(1, 3, 1, 3)
    y = torch.tensor([[[0, 1, 255]]])
    model = type("M", (), {"encode": lambda self, x: {"out": x},
                           "decode": lambda self, f, d, size: {"logits": logits}})()
    state = type("S", (), {"cfg": cfg})()
    got = U.losses(model, state, {"labelled": {"a": (torch.zeros(1, 3, 1, 3), y)}, "unlabelled": {}}, 0)
    e = math.e
    hand = (-math.log(e / (e + 1 + e ** 2)) - math.log(e / (1 + e + 1))) / 2
    assert got["sup/a"].item() == pytest.approx(hand)
    assert hand != pytest.approx((-math.log(e / (e + 1)) - math.log(e / (1 + e))) / 2)   # the logit counts


def test_released_none_class_leaves_the_entropy_terms_unchanged():
    terms = {}
    for switch in ("false", "true"):
        cfg, model, state, dds = _setup(f"universal.released_none_class={switch}")
        if terms:   # the same encoder, projection and label embeddings; only the heads differ
            model.encoder.load_state_dict(ref[0].encoder.state_dict())
            state.projection.load_state_dict(ref[1].projection.state_dict())
            for d in dds:
                assert torch.equal(state.centroids(d), ref[1].centroids(d))
        ref = (model, state)
        terms[switch] = U.losses(model, state, _batch(dds), 0)
    entropy = [k for k in terms["false"] if not k.startswith("sup/")]
    assert entropy and set(terms["true"]) == set(terms["false"])
    for k in entropy:
        assert torch.allclose(terms["true"][k], terms["false"][k])


def test_released_none_class_trains_evaluates_and_reloads(tmp_path, capsys):
    from types import SimpleNamespace

    from unisemi.cli import cmd_eval
    from unisemi.viz import load_run
    res = fit(_cfg("universal.released_none_class=true", "train.iterations=3", "train.eval_every=3"),
              out_dir=tmp_path)
    town = res["final"]["domains"]["town"]
    assert len(town["iou"]) == 11
    # the mean over the classes scored (absent ones are NaN and skipped)
    scored = [v for v in town["iou"].values() if not math.isnan(v)]
    assert town["miou"] == pytest.approx(sum(scored) / len(scored))
    _, model, _ = load_run(str(tmp_path))
    assert model.head_outputs == {"city": 20, "town": 12}
    assert cmd_eval(SimpleNamespace(checkpoint=str(tmp_path), config=None, set=[])) == 0
    assert "town: mIoU" in capsys.readouterr().out


@pytest.mark.parametrize("preset, method, domains", [
    ("univ_basic", "supervised", ("city", "town")), ("univ_cross", "universal", ("city", "town")),
    ("universal_city_town", "universal", ("city", "town")), ("univ_full_k3", "universal", ("city", "town")),
    ("univ_trainable_centroids", "universal", ("city", "town")), ("supervised_town", "supervised", ("town",)),
    ("finetune_city_to_town", "finetune", ("town",))])
def test_every_baseline_of_the_paper_is_a_preset_that_trains(preset, method, domains):
    from unisemi.config import load_config
    from unisemi.train import fit
    cfg = load_config(preset, ["data.size=[32, 64]", "data.n_labelled=4", "data.batch_size=2",
                               "data.unlabelled_batch_size=2", "data.val_images=2", "model.width=8",
                               "train.iterations=2", "train.eval_every=2", "train.threads=1",
                               "train.progress=false", "universal.init_iterations=2"])
    assert cfg.method == method and tuple(cfg.data.domains) == domains
    what_it_sets = {"univ_basic": (cfg.method, cfg.data.domains),
                    "univ_cross": (cfg.universal.alpha > 0, cfg.universal.beta),
                    "universal_city_town": (cfg.universal.alpha > 0, cfg.universal.beta > 0),
                    "univ_full_k3": cfg.universal.centroids,
                    "univ_trainable_centroids": cfg.universal.gamma,
                    "supervised_town": cfg.data.domains, "finetune_city_to_town": cfg.finetune.source_domain}
    assert what_it_sets[preset] == {
        "univ_basic": ("supervised", ("city", "town")), "univ_cross": (True, 0.0), "universal_city_town": (True, True),
        "univ_full_k3": 3, "univ_trainable_centroids": 0.9, "supervised_town": ("town",),
        "finetune_city_to_town": "city"}[preset]
    assert set(fit(cfg)["final"]["domains"]) == set(domains)


def test_pca_from_moments_equals_pca_on_the_rows():
    from unisemi.methods.universal.embeddings import pca_from_moments
    x = torch.randn(500, 12, dtype=torch.float64) @ torch.randn(12, 12, dtype=torch.float64)
    mean, comps = pca(x, 5)
    m2, c2 = pca_from_moments(len(x), x.sum(0), x.T @ x, 5)
    torch.testing.assert_close(m2, mean)
    torch.testing.assert_close(c2, comps, atol=1e-8, rtol=1e-6)


def test_capped_class_rows_keeps_at_most_cap_rows_of_each_class():
    from unisemi.methods.universal.embeddings import capped_class_rows
    labels = torch.tensor([0] * 10 + [1] * 3 + [4] * 7)
    rows = torch.arange(20.0).unsqueeze(1)
    kept, lab = capped_class_rows(rows, labels, 5, torch.Generator().manual_seed(0))
    assert torch.bincount(lab).tolist() == [5, 3, 0, 0, 5]
    assert torch.equal(labels[kept.squeeze(1).long()], lab)        # each row keeps its own label


def test_streamed_label_embeddings_equal_the_in_memory_ones_without_subsampling():
    """The real-dataset path (PCA from moments, per-batch class shares) on a labelled set small
    enough that no class reaches the cap: the same centres as the in-memory recipe."""
    from unisemi.data import load_domain
    from unisemi.methods.universal.embeddings import build_embeddings, streamed_embeddings
    from unisemi.models import build_model
    cfg = _cfg("data.n_labelled=2")
    dd = load_domain(cfg.data, "town")
    model = build_model(cfg.model, {"town": dd.num_classes})
    want = build_embeddings(model, cfg.data, "town", 8, 1, seed=0)
    got = streamed_embeddings(model, dd, 8, 1, seed=0)
    assert got.shape == want.shape == (dd.num_classes, 1, 8)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_finetune_restart_schedule_starts_the_target_phase_at_the_full_rate():
    """restart_schedule: two poly schedules (source to the switch, target after it), the
    optimiser's momentum dropped at the switch; off: one poly schedule over the whole run."""
    from unisemi.methods import finetune as FT
    from unisemi.models import build_model
    from unisemi.optim import build_optimizer, poly_lr, set_lr
    base = TINY + ["method=finetune", "finetune.source_domain=town", "train.iterations=10", "optim.lr=0.1"]
    for restart in (False, True):
        cfg = load_config("supervised_city", base + [f"finetune.restart_schedule={str(restart).lower()}"])
        model = build_model(cfg.model, {"city": 19})
        state = FT.build(cfg, model)
        group = FT.groups(cfg, model, state)[0]
        assert group.restart_at == (5 if restart else 0)
        opt = build_optimizer(group)
        p = group.parameters()[0]
        p.grad = torch.ones_like(p)
        lrs = []
        for step in range(10):
            if step == 5:
                assert opt.state.get(p), "momentum is kept up to the switch"
            lrs.append(set_lr(opt, group, step, 10))
            if step == 5:
                assert bool(opt.state.get(p)) is not restart     # dropped at the switch only with restart
            opt.step()
        if restart:
            want = [poly_lr(0.1, s, 5, 0.9) for s in range(5)] + [poly_lr(0.1, s, 5, 0.9) for s in range(5)]
            assert lrs[5] == 0.1
        else:
            want = [poly_lr(0.1, s, 10, 0.9) for s in range(10)]
            assert lrs[5] < 0.1 * 0.6
        assert lrs == pytest.approx(want, rel=1e-12)
        # the head's group keeps its multiplier on top
        assert opt.param_groups[1]["lr"] == pytest.approx(lrs[-1] * cfg.optim.head_lr_mult)
