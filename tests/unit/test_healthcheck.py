"""Health check node port answers, as kube-proxy's health server gives them."""

from __future__ import annotations

import dataclasses
import json
from ipaddress import IPv4Address

from kube_proxy_upstream_cases import OVERALL

from labkit.dataplane.healthcheck import health_responses
from labkit.dataplane.kubeproxy import EndpointPlan


def test_no_local_endpoint_answers_503():
    ((port, answer),) = health_responses(OVERALL).items()  # only ns2/svc2 is ETP Local
    assert port == 30000 and answer.status == 503
    assert json.loads(answer.body) == {
        "service": {"namespace": "ns2", "name": "svc2"},
        "localEndpoints": 0,
        "serviceProxyHealthy": True,
    }


def test_local_ready_endpoints_answer_200_with_their_count():
    svc2 = OVERALL.services[1]
    local = (
        EndpointPlan(IPv4Address("10.180.0.7"), 80, node="test-node"),
        EndpointPlan(IPv4Address("10.180.0.8"), 80, node="test-node", ready=False),
    )
    plan = dataclasses.replace(
        OVERALL, services=(dataclasses.replace(svc2, endpoints=svc2.endpoints + local),)
    )
    answer = health_responses(plan)[30000]
    assert (answer.status, answer.headers["X-Load-Balancing-Endpoint-Weight"]) == (200, "1")
