from data_prep.dedup.exact import text_digest
from data_prep.split import TEST, TRAIN, VAL, SplitConfig, assign_split


def test_split_is_deterministic_disjoint_and_close_to_the_fraction():
    digests = [text_digest(f"document {i}") for i in range(4000)]
    first = [assign_split(d, SplitConfig(val_fraction=0.1, seed=0)) for d in digests]
    assert first == [assign_split(d, SplitConfig(val_fraction=0.1, seed=0)) for d in digests]
    assert set(first) == {TRAIN, VAL}
    assert 0.08 < first.count(VAL) / len(first) < 0.12
    reseeded = [assign_split(d, SplitConfig(val_fraction=0.1, seed=1)) for d in digests]
    assert first != reseeded  # the seed changes the held-out set


def test_test_split_takes_its_share_without_moving_validation_documents():
    digests = [text_digest(f"document {i}") for i in range(4000)]
    two_way = [assign_split(d, SplitConfig(val_fraction=0.1)) for d in digests]
    three_way = [assign_split(d, SplitConfig(val_fraction=0.1, test_fraction=0.05)) for d in digests]
    assert [s for s in two_way if s == VAL] == [s for s in three_way if s == VAL]
    assert 0.035 < three_way.count(TEST) / len(digests) < 0.065
    assert all(a == TRAIN for a, b in zip(two_way, three_way) if b == TEST)
