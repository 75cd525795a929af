"""Stored laptop tables keep their trial keys: a new config field must not rename every stored
trial (a `--resume` would then rerun the whole table). These digests were taken at cc29825, before
stage 3 added fields; a change here must be deliberate and said in the commit."""
import hashlib

import pytest

from unisemi.ablation.spec import expand, load_spec

STORED = {  # table -> (sha1 of its sorted laptop trial keys, first 16 hex; number of trials)
    "contrastive/table6": ("ad0b4e21a303b4a6", 14),
    "universal/table1": ("c3667a947a9803f2", 10),
    "ass/table1": ("5970b4ee90ab6825", 8),
}


@pytest.mark.parametrize("table", sorted(STORED))
def test_laptop_trial_keys_are_the_stored_ones(table):
    trials, _ = expand(load_spec(table), "laptop")
    keys = sorted(t.key for t in trials)
    assert (hashlib.sha1(" ".join(keys).encode()).hexdigest()[:16], len(keys)) == STORED[table]


def test_a_new_field_at_its_default_stays_out_of_the_identity_and_counts_when_set():
    spec = load_spec("contrastive/table6")
    plain, _ = expand(spec, "laptop")
    partial, _ = expand(spec, "laptop", overrides={"model": {"pretrained_partial": True}})
    assert {t.key for t in plain}.isdisjoint({t.key for t in partial})
