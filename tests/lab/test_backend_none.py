"""Backend `none`: pods on one node share its bridge; nothing joins the nodes."""

from __future__ import annotations

import pytest

from labkit import expect

pytestmark = pytest.mark.topology("isolated")


def test_pods_on_one_node_reach_each_other(lab):
    expect.reachable([lab.pod("a-2")], [lab.pod("a-1")])


def test_cross_node_fails(lab):
    expect.unreachable([lab.pod("a-1"), lab.pod("a-2")], [lab.pod("b-1")])
    expect.unreachable([lab.pod("a-2")], [lab.pod("b-1")], expect.tcp(8080, timeout=1))
