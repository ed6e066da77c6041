"""KeyRange, RangePartition (even split of [0, size) over servers) and Layout (rank roles)."""
import numpy as np
import pytest

from mpips.errors import LayoutError
from mpips.core.partition import (KEY_SPACE, KeyRange, Layout, RangePartition, ranks_lost_before,
                             servers_after_loss)

MAX = KEY_SPACE - 1


def span(r: KeyRange) -> int:
    """Number of keys in ``r`` (len() is checked separately: it cannot exceed sys.maxsize)."""
    return r.end - r.begin

# ==================================================================================== KeyRange


@pytest.mark.parametrize("begin, end", [(0, 0), (0, 1), (5, 10), (0, KEY_SPACE),
                                        (MAX, KEY_SPACE), (KEY_SPACE, KEY_SPACE)])
def test_key_range_accepts_valid_bounds(begin, end):
    r = KeyRange(begin, end)
    assert (r.begin, r.end) == (begin, end)
    assert str(r) == f"[{begin}, {end})"


@pytest.mark.parametrize("begin, end", [(0, 0), (0, 1), (5, 10), (MAX, KEY_SPACE),
                                        (0, 2**63 - 1)])
def test_key_range_length(begin, end):
    assert len(KeyRange(begin, end)) == end - begin


@pytest.mark.parametrize("begin, end", [(0, 0), (7, 7), (0, 1), (MAX, KEY_SPACE), (0, 2**63),
                                        (0, KEY_SPACE), (1, KEY_SPACE)])
def test_key_range_truth_is_non_emptiness(begin, end):
    # The range of a sparse table on one or two servers holds >= 2**63 keys, more than
    # len() can return; ``if key_range:`` (as mpips/store/dense_slice.py writes it) must still work.
    assert bool(KeyRange(begin, end)) == (end > begin)


@pytest.mark.parametrize("begin, end", [(-1, 5), (5, 4), (0, KEY_SPACE + 1),
                                        (KEY_SPACE + 1, KEY_SPACE + 2)])
def test_key_range_rejects_invalid_bounds(begin, end):
    with pytest.raises(ValueError, match=rf"invalid key range \[{begin}, {end}\)"):
        KeyRange(begin, end)


def test_key_range_membership_is_half_open():
    r = KeyRange(10, 20)
    assert 10 in r and 19 in r
    assert 9 not in r and 20 not in r
    top = KeyRange(MAX, KEY_SPACE)
    assert MAX in top and KEY_SPACE not in top
    assert 0 not in KeyRange(0, 0)


def test_key_range_is_frozen():
    with pytest.raises(AttributeError):
        KeyRange(0, 1).end = 2


# ============================================================================== RangePartition

SIZES = [1, 2, 3, 7, 10, 100, 1_000_003, 2**32, 2**63, MAX, KEY_SPACE]
SERVERS = [1, 2, 3, 4, 7, 16]


@pytest.mark.parametrize("num_servers", SERVERS)
@pytest.mark.parametrize("size", SIZES)
def test_ranges_tile_the_key_space(size, num_servers):
    part = RangePartition(size, num_servers)
    ranges = part.ranges()
    assert len(ranges) == num_servers
    assert ranges[0].begin == 0 and ranges[-1].end == size
    for left, right in zip(ranges, ranges[1:]):
        assert left.end == right.begin  # no gap, no overlap
    assert sum(span(r) for r in ranges) == size
    lengths = [span(r) for r in ranges]
    assert max(lengths) - min(lengths) <= 1  # an even split
    assert ranges == [part.range_of(s) for s in range(num_servers)]


@pytest.mark.parametrize("num_servers", SERVERS)
@pytest.mark.parametrize("size", SIZES)
def test_boundaries_are_uint64_begins_of_servers_after_the_first(size, num_servers):
    part = RangePartition(size, num_servers)
    cuts = part.boundaries()
    assert cuts.dtype == np.uint64
    assert cuts.shape == (num_servers - 1,)
    assert cuts.tolist() == [part.range_of(s).begin for s in range(1, num_servers)]


@pytest.mark.parametrize("num_servers", SERVERS)
@pytest.mark.parametrize("size", SIZES)
def test_owner_of_range_edges(size, num_servers):
    part = RangePartition(size, num_servers)
    for server, r in enumerate(part.ranges()):
        if span(r):
            assert part.owner(r.begin) == server
            assert part.owner(r.end - 1) == server
            assert part.owner(r.begin + span(r) // 2) == server


def test_fewer_keys_than_servers_leaves_some_servers_empty():
    part = RangePartition(2, 4)
    assert [(r.begin, r.end) for r in part.ranges()] == [(0, 0), (0, 1), (1, 1), (1, 2)]
    assert [part.owner(k) for k in (0, 1)] == [1, 3]


def test_sparse_key_space_split_in_two():
    part = RangePartition(KEY_SPACE, 2)
    assert part.range_of(0) == KeyRange(0, 2**63)
    assert part.range_of(1) == KeyRange(2**63, KEY_SPACE)
    assert part.owner(2**63 - 1) == 0 and part.owner(2**63) == 1 and part.owner(MAX) == 1


def test_owner_matches_ranges_for_random_keys():
    rng = np.random.default_rng(3)
    part = RangePartition(KEY_SPACE, 5)
    ranges = part.ranges()
    for key in rng.integers(0, MAX, size=200, dtype=np.uint64, endpoint=True):
        owner = part.owner(int(key))
        assert int(key) in ranges[owner]


@pytest.mark.parametrize("key", [-1, 10, 11])
def test_owner_rejects_keys_outside_the_table(key):
    with pytest.raises(KeyError, match=f"key {key} outside"):
        RangePartition(10, 3).owner(key)


@pytest.mark.parametrize("server", [-1, 3])
def test_range_of_rejects_bad_server_index(server):
    with pytest.raises(IndexError, match=rf"server index {server} not in \[0, 3\)"):
        RangePartition(10, 3).range_of(server)


@pytest.mark.parametrize("num_servers", [0, -2])
def test_partition_needs_a_server(num_servers):
    with pytest.raises(LayoutError, match=f"got {num_servers}"):
        RangePartition(10, num_servers)


@pytest.mark.parametrize("size", [0, -1, KEY_SPACE + 1])
def test_partition_rejects_bad_size(size):
    with pytest.raises(ValueError, match=f"got {size}"):
        RangePartition(size, 2)


# ====================================================================================== Layout


@pytest.mark.parametrize("ranks, servers", [(1, 1), (2, 2), (3, 5), (4, 0), (4, -1)])
def test_layout_rejects_impossible_splits_naming_the_counts(ranks, servers):
    with pytest.raises(LayoutError) as info:
        Layout(ranks, servers)
    message = str(info.value)
    assert f"{ranks} rank(s)" in message and f"--servers {servers}" in message


def test_layout_without_workers_suggests_a_fix():
    with pytest.raises(LayoutError, match=r"at most 2 server\(s\), or launch at least 4 ranks"):
        Layout(3, 3)


@pytest.mark.parametrize("ranks, servers", [(2, 1), (5, 2), (6, 5), (64, 8)])
def test_layout_roles(ranks, servers):
    layout = Layout(ranks, servers)
    workers = ranks - servers
    assert layout.num_workers == workers
    # Workers are the first ranks (rank 0 is worker 0), servers the last ones.
    assert [layout.is_server(r) for r in range(ranks)] == [False] * workers + [True] * servers
    assert [layout.worker_index(r) for r in range(ranks)] == list(range(workers)) + [-1] * servers
    assert [layout.server_index(r) for r in range(ranks)] == [-1] * workers + list(range(servers))
    assert [layout.server_rank(s) for s in range(servers)] == list(range(workers, ranks))
    for s in range(servers):
        assert layout.server_index(layout.server_rank(s)) == s


@pytest.mark.parametrize("requested,lost,servers", [(2, 0, 2), (2, 1, 1), (3, 1, 2), (2, 2, 1),
                                                    (1, 1, 1), (4, 9, 1)])
def test_a_relaunch_gives_up_servers_first(requested, lost, servers):
    """Each lost rank costs a server while more than one is left; workers keep their shards."""
    assert servers_after_loss(requested, lost) == servers


@pytest.mark.parametrize("requested,lost", [(0, 1), (2, -1)])
def test_servers_after_loss_rejects_nonsense(requested, lost):
    with pytest.raises(LayoutError):
        servers_after_loss(requested, lost)


@pytest.mark.parametrize("environ,lost", [({}, 0), ({"MPIPS_RANKS_LOST": ""}, 0),
                                          ({"MPIPS_RANKS_LOST": " 2 "}, 2)])
def test_ranks_lost_before_reads_the_relaunch_count(environ, lost):
    assert ranks_lost_before(environ) == lost


@pytest.mark.parametrize("text", ["-1", "two", "1.5"])
def test_ranks_lost_before_names_a_bad_count(text):
    with pytest.raises(LayoutError, match="MPIPS_RANKS_LOST must be a count"):
        ranks_lost_before({"MPIPS_RANKS_LOST": text})
