import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """Stages and resized pairs go to a folder of this session's, not the user's ~/.cache, unless
    $UNISEMI_CACHE names one (CI does); tests that need an empty cache set their own."""
    if "UNISEMI_CACHE" in os.environ:
        yield
        return
    os.environ["UNISEMI_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    os.environ.pop("UNISEMI_CACHE", None)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs) shared by the tests that need it; ~3 s to start."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


TINY = {"data.size": [32, 64], "data.n_labelled": 8, "data.batch_size": 2, "data.val_images": 4,
        "model.width": 8, "train.iterations": 6, "train.eval_every": 3, "train.threads": 1}


def tiny_spec(path, name="table1", cells=("a", "b"), seeds=2, extra_levels=None, domains=None,
              baseline=True, suite="contrastive"):
    """Write a small spec in the real layout (<tmp>/<suite>/<name>.yaml) and return its path."""
    import yaml
    levels = {c: {"set": {"optim.lr": 0.01 if c == "a" else 0.02}} for c in cells}
    levels.update(extra_levels or {})
    domains = domains or {"main": "city"}
    spec = {
        "title": "tiny test table", "preset": "supervised_city", "seeds": seeds,
        "domains": list(domains), "profiles": {"laptop": {"domains": domains, "set": TINY}},
        "axes": {"variant": levels}, "layout": {"rows": "variant"},
        # the paper's number for each of the spec's own cells (a: 50, b: 51, others 52 + index)
        "paper": {c: {k: {"a": 50.0, "b": 51.0}.get(c, 52.0 + i) for k in domains}
                  for i, c in enumerate(cells)},
        "footnotes": ["a tiny table for tests"],
    }
    if baseline:
        spec["baseline"] = {"variant": "a"}
    d = path / suite
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p
