"""--set reaches the training and space settings by section (`train.x`, `space.x`) or by
the flat alias, and a wrong section or field is one message naming the valid ones."""
from __future__ import annotations

import pytest

from ktg_search.config import SearchConfig
from ktg_search.errors import KtgError


def test_dotted_and_flat_keys_set_the_same_fields():
    dotted = SearchConfig().with_overrides(
        ["train.lr_g=0.003", "train.epochs=5", "train.discriminator=sn-cnn",
         "space.k=2", "space.alphas=10,100", "space.gates=through,cutoff"])
    flat = SearchConfig().with_overrides(
        ["lr_g=0.003", "max_epochs=5", "discriminator=sn-cnn", "k=2", "alphas=10,100",
         "gates=through,cutoff"])
    assert dotted == flat
    assert dotted.train_config().lr_g == 0.003 and dotted.train_config().epochs == 5
    assert dotted.space().alphas == (10.0, 100.0) and dotted.space().k == 2


@pytest.mark.parametrize("item,named", [
    ("train.k=2", ["'train.k'", "train.lr_g", "train.epochs"]),
    ("space.lr_g=1", ["'space.lr_g'", "space.k", "space.alphas"]),
    ("model.k=2", ["'model'", "train.<field>", "space.<field>"]),
])
def test_a_wrong_section_or_field_names_the_valid_ones(item, named):
    with pytest.raises(KtgError) as e:
        SearchConfig().with_overrides([item])
    for text in named:
        assert text in str(e.value)
