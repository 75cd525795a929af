import pytest
import torch

from unisemi.data.sampler import IndexSampler
from unisemi.data.splits import labelled_split, n_from_config, split_hash


def test_split_partitions_pool_and_is_seeded():
    lab, unl = labelled_split(50, 7, split_seed=3)
    assert len(lab) == 7 and len(unl) == 43
    assert torch.equal(torch.cat([lab, unl]).sort().values, torch.arange(50))
    lab2, _ = labelled_split(50, 7, split_seed=3)
    lab3, _ = labelled_split(50, 7, split_seed=4)
    assert torch.equal(lab, lab2)
    assert not torch.equal(lab, lab3)


def test_n_from_fraction_and_errors():
    assert n_from_config(100, 1 / 30, 2975, "city") == 99
    assert n_from_config(100, 0.0, 2975, "city") == 100
    with pytest.raises(ValueError, match="data.n_labelled=5000 for domain 'city'"):
        n_from_config(5000, 0.0, 2975, "city")


def test_split_hash_is_order_independent():
    assert split_hash([3, 1, 2]) == split_hash([1, 2, 3]) != split_hash([1, 2, 4])


def test_sampler_covers_each_epoch_and_resumes_exactly():
    s = IndexSampler(torch.arange(10), batch_size=4, seed=0)
    first_epoch = torch.cat([s.next() for _ in range(2)] + [s.next()[:2]])
    assert sorted(first_epoch.tolist()) == list(range(10))  # no repeats inside an epoch
    state = s.state_dict()
    a = [s.next() for _ in range(5)]
    s.load_state_dict(state)
    b = [s.next() for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
