"""The lab `make lab-up` brings up, poked the way the README's next steps say."""

from __future__ import annotations

import pytest

from labkit import expect

pytestmark = pytest.mark.topology("default")


def test_every_pod_reaches_every_pod(lab):
    expect.reachable(lab.pods(), lab.pods())


def test_the_web_service_answers_by_name_from_every_endpoint(lab):
    client = lab.pod("client")
    seen = {client.http("web", 80).pod for _ in range(30)}
    assert seen == {"web-1", "web-2", "web-3"}


def test_the_node_port_answers_on_every_node(lab):
    client = lab.pod("client")
    for node in lab.nodes():
        assert client.http(node, 30080).pod.startswith("web-")
