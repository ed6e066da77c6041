"""mpips.core.hosting: who serves and who copies each segment as servers die."""
import itertools

import pytest

from mpips.errors import LayoutError
from mpips.core.hosting import MAX_SEGMENTS_PER_SERVER, Hosting, SegmentLost, segments_per_server


def test_without_replicas_each_server_hosts_one_segment_and_a_death_loses_it():
    h = Hosting(3)
    assert (h.per_server, h.num_segments) == (1, 3)
    assert [h.host(g) for g in range(3)] == [0, 1, 2]
    assert h.replicas_of(1) == () and h.copies_on(0) == []
    with pytest.raises(SegmentLost, match="segment 1.*no replicas"):
        h.after_deaths({1})


@pytest.mark.parametrize("servers", range(2, 9))
def test_virtual_nodes_keep_a_server_s_copies_on_different_servers(servers):
    h = Hosting(servers, replicas=1)
    assert h.per_server == min(servers - 1, MAX_SEGMENTS_PER_SERVER)
    for server in range(servers):
        mine = h.home_segments(server)
        assert h.hosted_by(server) == mine  # all alive: every segment at home
        copies = [h.replicas_of(g)[0] for g in mine]
        assert server not in copies and len(set(copies)) == len(mine)
    for g in range(h.num_segments):
        chain = h.chain(g)
        assert chain[0] == g // h.per_server and sorted(chain) == list(range(servers))


@pytest.mark.parametrize("servers,replicas", [(2, 1), (3, 1), (4, 1), (5, 1), (3, 2), (5, 2),
                                              (6, 3)])
def test_a_dead_server_s_segments_spread_to_the_servers_holding_their_copies(servers,
                                                                             replicas):
    for dead in range(servers):
        before = Hosting(servers, replicas)
        after = before.after_deaths({dead})
        taken = set()
        for g in range(before.num_segments):
            if before.host(g) == dead:
                assert after.host(g) == before.replicas_of(g)[0]  # it had the copy
                taken.add(after.host(g))
            else:
                assert after.host(g) == before.host(g)  # nothing else moves
            holders = after.holders(g)
            assert dead not in holders and len(set(holders)) == len(holders)
            assert len(holders) == min(1 + replicas, servers - 1)
            # every holder but at most one new one (who gets a whole copy) held it before
            assert len(set(holders) - set(before.holders(g))) <= 1
        assert len(taken) == min(before.per_server, servers - 1)


def test_deaths_one_at_a_time_until_one_server_is_left():
    h = Hosting(4, 1)
    for dead in (2, 3, 0):
        h = h.after_deaths({dead})
    assert h.living == [1] and h.hosted_by(1) == list(range(h.num_segments))
    assert all(h.replicas_of(g) == () for g in range(h.num_segments))


def test_losing_every_holder_of_a_segment_at_once_loses_it():
    h = Hosting(4, 1)
    g = h.home_segments(1)[0]
    with pytest.raises(SegmentLost, match=f"segment {g}"):
        h.after_deaths(set(h.holders(g)))
    two = Hosting(4, 2)
    survived = two.after_deaths(set(two.holders(g)[:2]))  # one of three holders is left
    assert survived.host(g) == two.holders(g)[2]
    with pytest.raises(SegmentLost):
        two.after_deaths(set(two.holders(g)))


def test_two_neighbours_dying_at_once_lose_nothing_with_two_replicas():
    for servers in range(3, 7):
        for first in range(servers):
            dead = {first, (first + 1) % servers}
            after = Hosting(servers, 2).after_deaths(dead)
            assert not set(after.living) & dead and len(after.living) == servers - 2


def test_after_deaths_ignores_servers_already_dead():
    h = Hosting(3, 1).after_deaths({0})
    assert h.after_deaths({0}) == h


def test_segments_per_server():
    assert [segments_per_server(s, 0) for s in (1, 2, 8)] == [1, 1, 1]
    assert [segments_per_server(s, 1) for s in (1, 2, 3, 5, 9)] == [1, 1, 2, 4, 4]


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_servers=0), "at least one server"),
    (dict(num_servers=3, replicas=3), "3 replica.*need at least 4 servers"),
    (dict(num_servers=1, replicas=1), "need at least 2 servers"),
    (dict(num_servers=3, replicas=-1), "replicas must be an int >= 0"),
    (dict(num_servers=2, dead=frozenset({5})), "outside"),
])
def test_impossible_hostings_are_refused(kwargs, match):
    with pytest.raises(LayoutError, match=match):
        Hosting(**kwargs)


def test_every_dead_set_short_of_a_whole_chain_is_survived():
    for servers, replicas in itertools.product(range(2, 6), (1, 2)):
        if replicas >= servers:
            continue
        for size in range(1, servers):
            for dead in itertools.combinations(range(servers), size):
                before = Hosting(servers, replicas)
                lost = [g for g in range(before.num_segments)
                        if set(before.holders(g)) <= set(dead)]
                if lost:
                    with pytest.raises(SegmentLost):
                        before.after_deaths(dead)
                else:
                    after = before.after_deaths(dead)
                    assert all(after.host(g) not in dead for g in range(after.num_segments))


@pytest.mark.parametrize("servers,replicas", [(4, 2), (5, 2), (6, 3)])
def test_deaths_learnt_one_by_one_or_at_once_end_alike_and_hosts_only_move_down_the_chain(
        servers, replicas):
    """Survivors may learn of simultaneous deaths in different orders (mpips.server.replication
    relies on both): every order ends with the same hosting, and a segment's host only ever
    moves later in its chain, so a batch from an earlier host is a dead host's late one."""
    for dead in itertools.combinations(range(servers), replicas):
        at_once = Hosting(servers, replicas).after_deaths(set(dead))
        for order in itertools.permutations(dead):
            hosting = Hosting(servers, replicas)
            for server in order:
                before = hosting
                hosting = hosting.after_deaths({server})
                for g in range(hosting.num_segments):
                    chain = hosting.chain(g)
                    assert chain.index(hosting.host(g)) >= chain.index(before.host(g))
            assert [hosting.holders(g) for g in range(hosting.num_segments)] == \
                [at_once.holders(g) for g in range(at_once.num_segments)]
