"""Typed run configuration: dataclasses per concern, YAML loading, `--set` overrides, validation.

A run is described by one `Config`. YAML files set fields by section (`train: {iterations: 300}`),
`--set train.iterations=300` overrides one dotted key, and a file may name one `base:` preset whose
values it overrides (one level only, so a reader never chases a chain). Everything is validated once,
at load time, before any data is generated or Ray is started: unknown keys, wrong types and bad values
raise `ConfigError` with a one-line message naming the file, the key and the value.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from unisemi.methods import METHODS

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A bad config file, key or value; the message is one line meant for the user."""


@dataclass(frozen=True)
class DataConfig:
    domains: tuple[str, ...] = ("city",)  # one label space (and one head) per domain; a name of the
                                       # embedded world (city, game, ...) or a real dataset (cityscapes, ...)
    roots: dict[str, str] = dataclasses.field(default_factory=dict)  # real dataset -> root; default $UNISEMI_DATA/<dataset>
    split_lists: dict[str, str] = dataclasses.field(default_factory=dict)  # real dataset -> a published labeled.txt
    world_seed: int = 0                # which instance of the embedded world
    size: tuple[int, ...] = ()         # (H, W) override; empty = the domain's default size
    n_labelled: int = 100              # labelled images per domain (N in the papers)
    labelled_fraction: float = 0.0     # if > 0, overrides n_labelled with round(f * pool), e.g. 1/30
    split_seed: int = 0                # which images form the labelled split
    batch_size: int = 8                # labelled images per domain per step
    unlabelled_batch_size: int = 8     # unlabelled images per domain per step (methods that use them)
    hflip: bool = True                 # weak augmentation of labelled images
    val_images: int = 0                # evaluate on the first k val images; 0 = the whole val split
    # Real datasets only (the embedded world renders at data.size in memory):
    resize: tuple[int, ...] = ()       # (H, W) before scale and crop; () = the dataset's protocol, [0, 0] = none
    scale: tuple[float, ...] = ()      # random rescale range, e.g. [0.5, 1.5]; () = none
    crop: tuple[int, ...] = ()         # (H, W) random crop; () = the dataset's protocol, [0, 0] = none
    val_resize: tuple[int, ...] = ()   # (H, W) the val image is inferred at (logits upsampled to the label)
    workers: int = 2                   # decoding worker processes per stream (0 = in the loop's process)
    check_counts: bool = True          # a train split with other than the published count is an error
    prefetch: int = 2                  # batches each worker decodes ahead
    cache_resized: bool = True         # keep pairs at data.resize under $UNISEMI_CACHE/resized (same samples, faster)
    # what the model is fed: weights (what model.pretrained was trained on; imagenet without
    # published weights) | imagenet (RGB, ImageNet mean/std) | caffe_bgr (BGR 0-255 minus the Caffe
    # mean: the COCO DeepLabv2 files): data/transforms.py
    normalize: str = "weights"
    # SUN RGB-D only: the split scored as val: test (the 5,050 test images) | val37 (the 475 of
    # Chris Choy's split/val37.txt, the universal paper's and MSeg's validation set)
    sunrgbd_val: str = "test"


@dataclass(frozen=True)
class ModelConfig:
    # tiny | resnet18 | resnet34 | resnet50 | resnet101 (torchvision layout: stride on the 3x3) |
    # deeplabv2_resnet101 (DeepLabv2/Caffe: stride on the first 1x1) | deeplabv2_resnet101_imagenet
    # (DeepLabv2 for torchvision's ImageNet weights) | vgg16_largefov | drn_d_22
    encoder: str = "tiny"
    output_stride: int = 8             # 8 | 16
    width: int = 32                    # base width of the tiny encoder
    head: str = "fcn"                  # fcn (1x1 + bilinear, DRN) | aspp (DeepLabv2) | deeplabv3plus
    aspp_rates: tuple[int, ...] = (6, 12, 18, 24)
    aspp_active_branches: int = 4      # the release of Alonso et al. (2021) sums only 2 of the 4
    decoder_channels: int = 256        # DeepLabv3+ ASPP/decoder width
    # none | synthetic (python -m unisemi pretrain) | a published name (imagenet-resnet101,
    # coco-deeplabv2-resnet101, ...: docs/pretrained.md; the file under $UNISEMI_WEIGHTS) | a
    # local path. Never downloaded. Loads completely (every encoder tensor) or stops.
    pretrained: str = "none"
    pretrained_partial: bool = False   # laptop only: start from a partial file, logging the counts


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9            # lr_t = lr * (1 - t / T) ** power
    head_lr_mult: float = 1.0          # DeepLab trains its classifier at 10x


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 1000
    eval_every: int = 250              # also evaluates after the last iteration
    seed: int = 0                      # init, sampling and augmentation
    device: str = "cpu"                # cpu | cuda | auto
    amp: str = "off"                   # off | bf16 | fp16 (CUDA only; ignored on CPU)
    threads: int = 0                   # torch intra-op threads; 0 = leave torch's default
    checkpoint_every: int = 0          # iterations between checkpoints besides evaluations (a lost node costs at most this many); 0 = only at evaluations
    out_dir: str = ""                  # where checkpoints go; empty = no checkpoints
    progress: bool = True              # progress bar with ETA


@dataclass(frozen=True)
class EvalConfig:
    absent_as_zero: bool = False       # False: classes absent from GT and prediction are NaN and skipped
    batch_size: int = 32
    report: str = "final"              # which evaluation a table shows: final | best
    classes: tuple[str, ...] = ()      # mIoU over these classes only (SYNTHIA's 13); empty = all


GENERIC_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig,
                    "train": TrainConfig, "eval": EvalConfig}


def root_class(methods=None) -> type:
    """The root `Config` dataclass: `method`, the generic sections, and one section per registered
    method that has settings (its module's `Config`, named by its registry key). Built from the
    registry, so this file names no method; cached per registry content (tests register toys)."""
    methods = METHODS if methods is None else methods
    sections = tuple((name, m.Config) for name, m in methods.items() if hasattr(m, "Config"))
    if sections not in _ROOTS:
        fields = [("method", str, field(default="supervised"))]
        fields += [(n, c, field(default_factory=c)) for n, c in GENERIC_SECTIONS.items()]
        fields += [(n, c, field(default_factory=c)) for n, c in sections]
        root = dataclasses.make_dataclass("Config", fields, frozen=True)
        root.__module__ = __name__
        _ROOTS[sections] = root
    return _ROOTS[sections]


_ROOTS: dict = {}
Config = root_class()


# ----------------------------------------------------------------------------------------------
# Building a Config from nested dicts, with checks

def all_keys(cls=None, prefix: str = "") -> list[str]:
    """Every valid dotted key, e.g. 'train.iterations'."""
    cls = root_class() if cls is None else cls
    keys = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys += all_keys(hint, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}unknown key '{key}'{hint}")


def _coerce(value, hint, key: str, where: str):
    """Check `value` against a type hint; ints are accepted for floats, lists for tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}key '{key}': expected a mapping, got {type(value).__name__} {value!r}")
        kh, vh = typing.get_args(hint)
        return {_coerce(k, kh, f"{key}.{k}", where): _coerce(v, vh, f"{key}.{k}", where)
                for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, key, where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (float, int) and isinstance(value, str):
        # YAML 1.1 reads 1e6 (no dot) as a string; the field's type decides.
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and (hint is float or number.is_integer()):
            return float(value) if hint is float else int(number)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}key '{key}': expected {hint.__name__}, got "
                          f"{type(value).__name__} {value!r}")
    return value


def _build(cls, values: dict, prefix: str, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key = prefix + name
        if name not in names:
            raise _unknown(key, where)
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}key '{key}': expected a section (mapping), got {value!r}")
            kwargs[name] = _build(hint, value, key + ".", where)
        else:
            kwargs[name] = _coerce(value, hint, key, where)
    return cls(**kwargs)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict:
    """'train.iterations=300' -> {'train': {'iterations': 300}} (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected KEY=VALUE, e.g. train.iterations=300")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set '{text}': the value is not valid YAML (quote it, e.g. key='a b')") from None
    nested: dict = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def resolve_path(name: str) -> Path:
    """A config argument is a YAML path or the name of a preset in unisemi/presets."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    preset = PRESET_DIR / f"{name}.yaml"
    if preset.exists():
        return preset
    known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (close: {', '.join(close)})" if close else f" (presets: {', '.join(known)})"
    raise ConfigError(f"config '{name}': no such file or preset{hint}")


def yaml_error_text(path, exc: Exception) -> str:
    """One line: the file, the line and column where YAML gave up, and why."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None)
    return f"{path}: not valid YAML{where}" + (f": {problem}" if problem else "")


def read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_text(path, exc)) from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(values).__name__}")
    return values


def load_values(name: str | None) -> dict:
    """Raw nested values of a config file with its `base:` preset merged underneath."""
    if name is None:
        return {}
    path = resolve_path(name)
    values = read_yaml(path)
    base = values.pop("base", None)
    if base is not None:
        base_values = read_yaml(resolve_path(str(base)))
        if "base" in base_values:
            raise ConfigError(f"{path}: base preset '{base}' has a base of its own; one level only")
        values = _merge(base_values, values)
    return values


def build_config(values: dict, where: str = "") -> Config:
    prefix = f"{where}: " if where else ""
    cfg = _build(root_class(), values, "", prefix)
    validate(cfg, prefix)
    return cfg


def load_config(name: str | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a YAML file or preset, apply `--set` overrides, validate; errors name file and key."""
    values = load_values(name)
    for text in overrides:
        values = _merge(values, parse_override(text))
    where = str(resolve_path(name)) if name else "config"
    return build_config(values, where)


def with_overrides(cfg: Config, values: dict) -> Config:
    """A new validated Config: `cfg` with nested `values` merged on top."""
    return build_config(_merge(to_dict(cfg), values))


def validate(cfg, where: str = "") -> None:
    """Value checks that a type cannot express: the generic sections here, a method's own section
    in its module's `validate(cfg, bad)`."""
    from unisemi.data import known_domains

    def bad(key, value, expected):
        raise ConfigError(f"{where}key '{key}': {value!r} is not valid, expected {expected}")

    if cfg.method not in METHODS:
        bad("method", cfg.method, f"one of {', '.join(sorted(METHODS))}")
    if not cfg.data.domains:
        bad("data.domains", cfg.data.domains, "at least one domain")
    known = known_domains()
    for d in cfg.data.domains:
        if d not in known:
            bad("data.domains", d, f"one of {', '.join(known)}")
    if len(set(cfg.data.domains)) != len(cfg.data.domains):
        bad("data.domains", cfg.data.domains, "distinct domains")
    if cfg.data.n_labelled < 0:
        bad("data.n_labelled", cfg.data.n_labelled, "a count >= 0")
    if (cfg.data.n_labelled == 0 and not cfg.data.labelled_fraction
            and not getattr(METHODS.get(cfg.method), "TRAINS_WITHOUT_LABELS", False)):
        bad("data.n_labelled", 0, f"a count >= 1 (method '{cfg.method}' trains on the labelled images of data.domains)")
    if not 0.0 <= cfg.data.labelled_fraction <= 1.0:
        bad("data.labelled_fraction", cfg.data.labelled_fraction, "a fraction in [0, 1]")
    if cfg.data.size and (len(cfg.data.size) != 2 or any(s < 32 or s % 8 for s in cfg.data.size)):
        bad("data.size", cfg.data.size, "[H, W], each >= 32 and divisible by 8")
    for key in ("batch_size", "unlabelled_batch_size"):
        if getattr(cfg.data, key) < 1:
            bad(f"data.{key}", getattr(cfg.data, key), "an integer >= 1")
    if cfg.data.val_images < 0:
        bad("data.val_images", cfg.data.val_images, "a count >= 0 (0 = all)")
    _validate_real(cfg, bad)
    from unisemi.data.transforms import scheme_problem
    problem = scheme_problem(cfg.data.normalize, cfg.model.pretrained)   # the weights' input
    if problem:
        bad("data.normalize", cfg.data.normalize, problem)
    if cfg.model.output_stride not in (8, 16):
        bad("model.output_stride", cfg.model.output_stride, "8 or 16")
    if cfg.train.iterations < 1:
        bad("train.iterations", cfg.train.iterations, "an integer >= 1")
    if cfg.train.eval_every < 1:
        bad("train.eval_every", cfg.train.eval_every, "an integer >= 1")
    if cfg.train.device not in ("cpu", "cuda", "auto"):
        bad("train.device", cfg.train.device, "cpu, cuda or auto")
    if cfg.train.amp not in ("off", "bf16", "fp16"):
        bad("train.amp", cfg.train.amp, "off, bf16 or fp16")
    if cfg.eval.report not in ("final", "best"):
        bad("eval.report", cfg.eval.report, "final or best")
    if cfg.eval.classes:
        from unisemi.data import label_space
        for d in cfg.data.domains:
            space = label_space(d)
            for name in cfg.eval.classes:
                if name not in space:
                    bad("eval.classes", name, f"a class of domain '{d}' ({', '.join(space)})")
    if cfg.optim.lr <= 0:
        bad("optim.lr", cfg.optim.lr, "a learning rate > 0")
    for name, module in METHODS.items():
        # Every section is checked (a spec may set one for a later cell); the method's own
        # module also checks what its method needs of the generic sections.
        check = getattr(module, "validate", None)
        if check is not None:
            check(cfg, bad, active=cfg.method == name)


def _validate_real(cfg, bad) -> None:
    """The streaming pipeline's keys (real datasets only)."""
    from unisemi.data.real import DATASETS
    for key in ("roots", "split_lists"):
        for name, value in getattr(cfg.data, key).items():
            if name not in DATASETS:
                bad(f"data.{key}.{name}", value, f"a path for one of {', '.join(DATASETS)}")
    for key in ("resize", "crop", "val_resize"):
        value = getattr(cfg.data, key)
        if value and (len(value) != 2 or (tuple(value) != (0, 0) and min(value) < 8)):
            bad(f"data.{key}", value, "[H, W] with H, W >= 8, [0, 0] for none, or [] for the dataset's protocol")
    if cfg.data.scale and (len(cfg.data.scale) != 2 or not 0 < cfg.data.scale[0] <= cfg.data.scale[1]):
        bad("data.scale", cfg.data.scale, "[lo, hi] with 0 < lo <= hi")
    if cfg.data.workers < 0:
        bad("data.workers", cfg.data.workers, "a count >= 0")
    if cfg.data.prefetch < 1:
        bad("data.prefetch", cfg.data.prefetch, "an integer >= 1")
    from unisemi.data.real import SUNRGBD_VAL
    if cfg.data.sunrgbd_val not in SUNRGBD_VAL:
        bad("data.sunrgbd_val", cfg.data.sunrgbd_val, " | ".join(SUNRGBD_VAL))


def foreign_method_keys(values: dict, method: str) -> list[str]:
    """Dotted keys in `values` (nested) that set the section of a registered method other than
    `method`: in a spec cell they would change nothing, and the cell would silently equal another."""
    out = []
    for name, module in METHODS.items():
        if name != method and hasattr(module, "Config") and isinstance(values.get(name), dict):
            out += [f"{name}.{k}" for k in sorted(_flatten(values[name]))]
    return out


def _flatten(values: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in values.items():
        keys += _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return keys


def to_dict(cfg) -> dict:
    """Plain nested dict (tuples as lists) for YAML/JSON and for results rows."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_hash(cfg) -> str:
    """Stable hash of the resolved config; two runs with equal hashes ran the same settings."""
    text = json.dumps(to_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
