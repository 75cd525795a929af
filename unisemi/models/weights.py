"""Load optional pretrained encoder weights from a local file (never downloads)."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

# Wrappers added by DataParallel / segmentation frameworks around the encoder.
STRIP_PREFIXES = ("module.", "encoder.", "backbone.")
# Keys of an ImageNet classifier that an encoder never has; reported as
# unexpected but not worth a warning.
EXPECTED_EXTRA_PREFIXES = ("fc.",)


def _unwrap(obj, path: Path) -> Mapping:
    # Training checkpoints often nest the weights under "state_dict" or "model".
    for _ in range(3):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)),
                         None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not any(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path} does not contain a state dict of tensors "
                         f"(got {type(obj).__name__})")
    return obj


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in STRIP_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict with prefixes stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors vary by torch version
        raise ValueError(f"{path} is not a readable torch checkpoint: {e}") from e
    state = _unwrap(obj, path)
    return {_strip(str(k)): v for k, v in state.items() if torch.is_tensor(v)}


def load_encoder_weights(encoder: nn.Module, path) -> dict[str, list[str]]:
    """Copy shape-matching tensors from ``path`` into ``encoder`` by name.

    Returns lists of names: ``loaded``, ``missing`` (in the encoder, not in the
    file), ``unexpected`` (in the file, not in the encoder; includes ``fc.*``),
    ``mismatched`` (same name, different shape; left untouched).
    """
    source = read_state_dict(path)
    target = encoder.state_dict()
    loadable = {k: v for k, v in source.items() if k in target and v.shape == target[k].shape}
    encoder.load_state_dict(loadable, strict=False)
    return {
        "loaded": sorted(loadable),
        # BN step counters are absent from many published checkpoints and carry
        # no learned information, so they are not reported as missing.
        "missing": sorted(k for k in target
                          if k not in source and not k.endswith("num_batches_tracked")),
        "unexpected": sorted(k for k in source if k not in target),
        "mismatched": sorted(k for k in source if k in target and k not in loadable),
    }


def summarize(report: dict[str, list[str]], path) -> str:
    """One-line summary for logs; expected extras (fc.*) are not counted as surprises."""
    extra = [k for k in report["unexpected"] if not k.startswith(EXPECTED_EXTRA_PREFIXES)]
    line = (f"encoder weights from {path}: loaded {len(report['loaded'])}, "
            f"missing {len(report['missing'])}, unexpected {len(extra)}, "
            f"mismatched {len(report['mismatched'])}")
    examples = (report["missing"] + extra + report["mismatched"])[:3]
    return line + (f" (e.g. {', '.join(examples)})" if examples else "")


def weights_hash(path) -> str:
    """sha256 of the weights file's bytes, first 16 hex digits: which file a run started from."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
