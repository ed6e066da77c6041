"""mpips.hosting: who serves and who copies each segment as servers die."""
import itertools

import pytest

from mpips.errors import LayoutError
from mpips.hosting import Hosting, SegmentLost


def test_while_all_live_each_server_hosts_its_segment_and_its_successor_copies_it():
    h = Hosting(4, replicas=1)
    assert [h.host(s) for s in range(4)] == [0, 1, 2, 3]
    assert [h.replica(s) for s in range(4)] == [1, 2, 3, 0]
    assert h.copies_on(0) == [3] and h.hosted_by(2) == [2]


def test_without_replicas_there_is_no_copy_and_a_death_loses_its_segment():
    h = Hosting(3)
    assert h.replica(1) is None
    with pytest.raises(SegmentLost, match="segment 1"):
        h.after_deaths({1})


def test_a_dead_server_s_segment_moves_to_the_server_that_held_its_copy():
    for size, dead in itertools.product(range(2, 7), range(6)):
        if dead >= size:
            continue
        before = Hosting(size, 1)
        after = before.after_deaths({dead})
        assert after.host(dead) == before.replica(dead)
        for segment in range(size):
            if segment != dead:
                assert after.host(segment) == before.host(segment)  # nothing else moves
            replica = after.replica(segment)
            assert replica != after.host(segment) and replica not in after.dead
            assert (replica is None) == (size == 2)


def test_deaths_one_at_a_time_chain_until_one_server_is_left():
    h = Hosting(4, 1)
    for dead in (2, 3, 0):
        h = h.after_deaths({dead})
    assert h.living == [1] and h.hosted_by(1) == [0, 1, 2, 3] and h.replica(0) is None


def test_a_host_and_its_replica_dying_at_once_lose_the_segment():
    with pytest.raises(SegmentLost, match="segment 1"):
        Hosting(4, 1).after_deaths({1, 2})
    assert Hosting(4, 1).after_deaths({0, 2}).host(2) == 3  # not neighbours: survivable


def test_after_deaths_ignores_servers_already_dead():
    h = Hosting(3, 1).after_deaths({0})
    assert h.after_deaths({0}) == h


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_servers=0), "at least one server"),
    (dict(num_servers=3, replicas=2), "replicas must be 0 or 1"),
    (dict(num_servers=1, replicas=1), "needs a second server"),
    (dict(num_servers=2, dead=frozenset({5})), "outside"),
])
def test_impossible_hostings_are_refused(kwargs, match):
    with pytest.raises(LayoutError, match=match):
        Hosting(**kwargs)
