"""Read a local weights file (never downloads) and compare / copy it into an encoder by name.

The conversion of published layouts and the strict load live in convert.py and loading.py."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

# Wrappers added by DataParallel / segmentation frameworks around the encoder.
STRIP_PREFIXES = ("module.", "encoder.", "backbone.")


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


def _counted(key: str) -> bool:
    # BN step counters are absent from many published checkpoints and carry no learned
    # information, so they are neither required nor reported as missing.
    return not key.endswith("num_batches_tracked")


def compare(encoder: nn.Module, source: Mapping) -> dict[str, list[str]]:
    """What `source` would give `encoder`: ``loaded`` (name and shape fit), ``missing`` (in the
    encoder, not in the file), ``unexpected`` (in the file, not in the encoder), ``mismatched``
    (same name, other shape). Counted tensors exclude num_batches_tracked."""
    target = encoder.state_dict()
    return {
        "loaded": sorted(k for k, v in source.items() if k in target and v.shape == target[k].shape),
        "missing": sorted(k for k in target if k not in source and _counted(k)),
        "unexpected": sorted(k for k in source if k not in target),
        "mismatched": sorted(k for k, v in source.items() if k in target and v.shape != target[k].shape),
    }


def is_complete(report: dict[str, list[str]]) -> bool:
    """Every encoder tensor from the file with its shape, and nothing in the file left over."""
    return not (report["missing"] or report["mismatched"] or report["unexpected"])


def encoder_tensors(encoder: nn.Module) -> int:
    return sum(1 for k in encoder.state_dict() if _counted(k))


def copy_loaded(encoder: nn.Module, source: Mapping, report: dict[str, list[str]]) -> None:
    encoder.load_state_dict({k: source[k] for k in report["loaded"]}, strict=False)


def load_encoder_weights(encoder: nn.Module, path) -> dict[str, list[str]]:
    """Copy shape-matching tensors from ``path`` into ``encoder`` by name, no conversion and no
    completeness check (`load_pretrained` in models/__init__ does both); returns `compare`'s report."""
    source = read_state_dict(path)
    report = compare(encoder, source)
    copy_loaded(encoder, source, report)
    return report


def incomplete_line(report: dict[str, list[str]], what: str, total: int, encoder: str) -> str:
    """One line for a load that is not complete and exact: the counts and the first keys of each kind."""
    loaded = sum(1 for k in report["loaded"] if _counted(k))
    parts = [f"{what} does not fit encoder {encoder}: {loaded} of {total} encoder tensors from the file"]
    for kind in ("missing", "mismatched", "unexpected"):
        keys = report[kind]
        if keys:
            more = ", ..." if len(keys) > 3 else ""
            parts.append(f"{len(keys)} {kind} (first: {', '.join(keys[:3])}{more})")
    return "; ".join(parts) + ("; set model.pretrained_partial=true to start from it anyway "
                               "(laptop runs only)")


def weights_hash(path) -> str:
    """sha256 of the weights file's bytes, first 16 hex digits: which file a run started from."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
