"""Methods are plain modules with one interface; the training loop never branches on a name.

    NEEDS_UNLABELLED: bool
    RAW_IMAGES: bool (optional)   # batches hold float [0, 1] images that the method augments
    Config (optional)             # frozen dataclass: the method's config section, named by its key
    validate(config, bad, active) (optional)    # value checks of that section; bad(key, value, expected)
    extra_labelled(config) -> {domain: DataConfig} (optional)   # extra labelled-only domains
    head_classes(config, domain, num_classes) -> int (optional)  # outputs of a domain's head
    build(config, model, stages) -> nn.Module     # method state: extra modules and buffers;
                                                  # stages.get(...) for products of earlier fits
    relabel(state, domain, indices, labels) -> labels (optional)
        # the labels a labelled batch trains on, given its pool indices and the dataset's ones
        # (transfer: generated maps replace every weak-category image's ground truth)
    groups(config, model, state) -> [optim.Group] (optional)    # default: one SGD group
    losses(model, state, batch, step) -> {term: Tensor} | {group: {term: Tensor}}
        # weighted terms per update group (flat = the first group); never writes the state:
        # what the step would write goes to batch["updates"]
    update(model, state, batch, step) -> None (optional)
        # after every group stepped: the one place for state writes (EMA teacher, memory bank,
        # centroids)

A new method is one file plus one line here.
"""
from unisemi.methods import ass, contrastive, finetune, supervised, transfer, universal

METHODS = {
    "supervised": supervised,
    "contrastive": contrastive,
    "universal": universal,
    "finetune": finetune,
    "ass": ass,
    "transfer": transfer,
}


def get_method(name: str):
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]


def head_sizes(cfg, domains: dict) -> dict[str, int]:
    """{domain: outputs of its head} for `build_model`: the domain's classes unless the method
    widens a head (the universal release's "None" class)."""
    widen = getattr(get_method(cfg.method), "head_classes", None)
    return {d: (widen(cfg, d, dd.num_classes) if widen else dd.num_classes) for d, dd in domains.items()}
