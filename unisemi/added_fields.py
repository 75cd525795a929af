"""Config fields added after tables and stages were stored, with the value those stored runs
computed with. A trial key (ablation/spec.py) and a stage recipe (universal embeddings, transfer
stages) leave such a field out while it holds that value, so stored trials and stages keep their
names; a run that sets another value is a new one. Imports nothing, so methods can use it."""

ADDED_FIELDS = {
    ("model", "pretrained_partial"): False,      # only lets a load through that would otherwise stop
    # single-level GA, what every stored ASS trial ran (the paper profiles set multi_level)
    ("ass", "multi_level"): False, ("ass", "lambda_gadv_aux"): 0.0002, ("ass", "lambda_seg_aux"): 0.1,
    ("data", "normalize"): "weights",            # the weights' input; imagenet without any
    ("data", "sunrgbd_val"): "test",             # SUN RGB-D scored on its test split
    ("transfer", "lnet_batch_size"): 0,          # the L-Net at data.batch_size
    ("finetune", "restart_schedule"): False,     # one poly schedule over both phases
}


def drop_added_fields(values: dict) -> dict:
    """Remove, in place, every added field that holds its stored value; returns `values`."""
    for (section, name), stored in ADDED_FIELDS.items():
        if values.get(section, {}).get(name, stored) == stored:
            values.get(section, {}).pop(name, None)
    return values
