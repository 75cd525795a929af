"""One converter per published key layout: a flat state dict in that layout -> our encoder's keys.

Each converter returns ``(converted, dropped)``: `dropped` are the keys the layout is known to
carry beyond the encoder (an ImageNet `fc`, DeepLab's `layer5` classifier); anything else that
does not fit the encoder is reported as unexpected by the loader (weights.py).
Wrapper prefixes (`module.`, `encoder.`, `backbone.`) are stripped before, by `read_state_dict`.
"""
from __future__ import annotations

import torch

# DeepLab-LargeFOV keeps fc6 as a 3x3 conv (from VGG's 7x7) and fc6 / fc7 at 1024 of VGG's 4096
# units. DeepLab (Chen et al. 2015, Sec. 4.1) subsamples fc6 "by simple decimation"; which units
# it kept is not published, so we keep every 4th unit and the 7x7 taps 0, 3, 6 (centre and both
# ends): the LargeFOV shapes from the ImageNet weights, not DeepLab's own init file.
FC_KEEP_EVERY = 4
FC6_TAPS = (0, 3, 6)


def _drop(state: dict, prefixes: tuple[str, ...]) -> tuple[dict, list[str]]:
    kept = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    return kept, sorted(k for k in state if k.startswith(prefixes))


def unisemi_layout(state: dict) -> tuple[dict, list[str]]:
    """Our own files (the synthetic pretrained stand-in, an encoder saved by unisemi): as is."""
    return dict(state), []


def torchvision_resnet(state: dict) -> tuple[dict, list[str]]:
    """torchvision ResNets: our DilatedResNet keeps its names; the ImageNet `fc` is dropped."""
    return _drop(state, ("fc.",))


def deeplabv2_resnet(state: dict) -> tuple[dict, list[str]]:
    """DeepLabv2 ResNet-101 as AdvSemiSeg saves it: trunk names as ours, `layer5` = ASPP classifier."""
    return _drop(state, ("layer5.",))


def deeplabv2_resnet_scale(state: dict) -> tuple[dict, list[str]]:
    """The same network as converted from Caffe by pytorch-deeplab-resnet (AdaptSegNet's init):
    every key under `Scale.` (the multi-scale wrapper), `Scale.layer5` the classifier."""
    unscaled = {(k[len("Scale."):] if k.startswith("Scale.") else k): v for k, v in state.items()}
    kept, dropped = _drop(unscaled, ("layer5.",))
    return kept, ["Scale." + k for k in dropped]


def _decimate_fc6(w: torch.Tensor) -> torch.Tensor:
    if w.dim() != 2 or w.shape[1] % 49:
        return w                    # not VGG's fc6: left as is, the loader reports its shape
    w = w.reshape(w.shape[0], -1, 7, 7)[::FC_KEEP_EVERY]
    return w[:, :, list(FC6_TAPS)][:, :, :, list(FC6_TAPS)].contiguous()


def _decimate_fc7(w: torch.Tensor) -> torch.Tensor:
    if w.dim() != 2:
        return w
    w = w[::FC_KEEP_EVERY, ::FC_KEEP_EVERY]
    return w.reshape(*w.shape, 1, 1).contiguous()


def torchvision_vgg16(state: dict) -> tuple[dict, list[str]]:
    """torchvision VGG-16: `features.N` as is; `classifier.0` (fc6) and `classifier.3` (fc7) as
    convolutions decimated to LargeFOV's shapes; `classifier.6` (the 1000-way fc8) dropped.
    A file that already holds `fc6.*` / `fc7.*` convolutions (a LargeFOV init) keeps them."""
    out, dropped = _drop(state, ("classifier.6.",))
    moves = {"classifier.0.weight": ("fc6.weight", _decimate_fc6),
             "classifier.0.bias": ("fc6.bias", lambda b: b[::FC_KEEP_EVERY].contiguous()),
             "classifier.3.weight": ("fc7.weight", _decimate_fc7),
             "classifier.3.bias": ("fc7.bias", lambda b: b[::FC_KEEP_EVERY].contiguous())}
    for key, (new, fn) in moves.items():
        if key in out:
            out[new] = fn(out.pop(key))
    return out, dropped


def drn(state: dict) -> tuple[dict, list[str]]:
    """fyu/drn DRN-D: our names are its names; its ImageNet `fc` (a 1x1 conv) is dropped."""
    return _drop(state, ("fc.",))


LAYOUTS = {"unisemi": unisemi_layout, "torchvision-resnet": torchvision_resnet,
           "deeplabv2-resnet": deeplabv2_resnet, "deeplabv2-resnet-scale": deeplabv2_resnet_scale,
           "torchvision-vgg16": torchvision_vgg16, "drn": drn}

# The encoders a published layout was made for ("unisemi" fits any: it is the encoder's own).
LAYOUT_ENCODERS = {"torchvision-resnet": ("resnet18", "resnet34", "resnet50", "resnet101",
                                          "deeplabv2_resnet101_imagenet"),
                   "deeplabv2-resnet": ("deeplabv2_resnet101",),
                   "deeplabv2-resnet-scale": ("deeplabv2_resnet101",),
                   "torchvision-vgg16": ("vgg16_largefov",), "drn": ("drn_d_22",)}


def guess_layout(state: dict) -> str:
    """The layout of a file given by path, from the keys only the layout has; `unisemi` when none."""
    keys = list(state)
    if any(k.startswith("Scale.") for k in keys):
        return "deeplabv2-resnet-scale"
    if any(k.startswith("layer5.conv2d_list.") for k in keys):
        return "deeplabv2-resnet"
    if "classifier.0.weight" in state and any(k.startswith("features.") for k in keys):
        return "torchvision-vgg16"
    fc = state.get("fc.weight")
    if fc is not None and "layer0.0.weight" in state:
        return "drn"
    if fc is not None and fc.dim() == 2 and "conv1.weight" in state:
        return "torchvision-resnet"
    return "unisemi"


def check_layout(layout: str, encoder: str, what: str) -> None:
    fits = LAYOUT_ENCODERS.get(layout)
    if fits is not None and encoder not in fits:
        raise ValueError(f"{what} is in the {layout} layout, made for encoder "
                         f"{' / '.join(fits)}, but model.encoder is {encoder}")
