from __future__ import annotations

import random

from agentsearch.optimizers._demo_sets import make_demo_sets


def test_demo_sets_interleave_labels_so_every_prefix_is_balanced():
    ids = [f"p{i}" for i in range(10)] + [f"n{i}" for i in range(30)]
    label_of = {demo: demo[0] for demo in ids}
    sets = make_demo_sets([], ids, num_sets=5, size=8, rng=random.Random(0), label_of=label_of)
    assert len(sets) == 5
    for demo_set in sets:
        assert len(demo_set) == 8 and len(set(demo_set)) == 8
        for n in range(2, 9, 2):
            prefix = [label_of[d] for d in demo_set[:n]]
            assert prefix.count("p") == prefix.count("n")


def test_first_set_leads_with_bootstrapped_demos():
    preferred, others = ["p1", "n1"], ["p2", "p3", "n2", "n3"]
    label_of = {demo: demo[0] for demo in preferred + others}
    first = make_demo_sets(preferred, others, num_sets=3, size=2, rng=random.Random(1), label_of=label_of)[0]
    assert set(first) == {"p1", "n1"}


def test_free_form_outputs_are_sampled_without_balancing():
    ids = [f"d{i}" for i in range(20)]
    sets = make_demo_sets([], ids, num_sets=3, size=4, rng=random.Random(0))
    assert all(len(s) == 4 for s in sets) and len(sets) == 3


def test_no_demos_when_the_pool_is_empty_or_size_is_zero():
    assert make_demo_sets([], [], num_sets=3, size=4, rng=random.Random(0)) == ()
    assert make_demo_sets([], ["a"], num_sets=3, size=0, rng=random.Random(0)) == ()
