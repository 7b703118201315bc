"""The embedded backend's prompt store and prompt runs, without the model."""

from __future__ import annotations

import random

from rollsweep.servers.backends.batched import runs, shareable
from rollsweep.servers.backends.prompt_store import PromptStore, common_prefix


def test_common_prefix_matches_a_token_by_token_scan():
    generator = random.Random(0)
    for _ in range(500):
        a = [generator.randrange(3) for _ in range(generator.randrange(12))]
        b = a[: generator.randrange(len(a) + 1)] + [generator.randrange(3) for _ in range(4)]
        expected = 0
        while expected < min(len(a), len(b)) and a[expected] == b[expected]:
            expected += 1
        assert common_prefix(a, b) == expected
        assert common_prefix(tuple(a), tuple(b)) == expected


def test_the_store_finds_the_longest_shared_prefix_and_forgets_the_oldest_first():
    store = PromptStore(max_bytes=10)
    store.put([1, 2, 3], b"abcd")
    store.put([1, 2, 4, 5], b"efgh")
    assert store.best([1, 2, 4, 5, 6]) == (4, store.best([1, 2, 4, 5])[1])
    assert store.best([1, 2, 3, 9])[0] == 3
    assert store.best([7])[0] == 0
    store.put([8, 8], b"ijkl")  # 12 bytes > 10: the least recently used one goes
    assert not store.has([1, 2, 4, 5]) and store.has([1, 2, 3]) and store.has([8, 8])
    assert store.size_bytes == 8
    store.put([9], b"x" * 11)  # larger than the whole store: not kept, nothing evicted
    assert len(store) == 2
    assert not PromptStore(max_bytes=0).enabled


def test_prompt_runs_cover_the_range_with_no_one_token_run():
    for n_batch in (4, 5, 16, 256):
        for start in range(0, 40):
            for end in range(start, start + 3 * n_batch):
                if end - start == 1:
                    continue  # the backend never asks for it
                cut = runs(start, end, n_batch)
                if end == start:
                    assert cut == []
                    continue
                assert [a for a, _ in cut] == [start, *(b for _, b in cut[:-1])]
                assert cut[-1][1] == end
                assert all(2 <= b - a <= n_batch for a, b in cut)


def test_shareable_leaves_out_the_lone_last_chunk_of_the_old_schedule():
    assert shareable(256, 256) == 256
    assert shareable(257, 256) == 256  # 256 + a lone token
    assert shareable(513, 256) == 512
    assert shareable(1, 256) == 0
    assert shareable(60, 16) == 60
