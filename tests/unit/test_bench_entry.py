"""`labkit bench entry`'s reading of wrk reports. Pure."""

from __future__ import annotations

import pytest

from labkit.bench.entry import parse_wrk
from labkit.errors import LabkitError

REPORT = """\
Running 5s test @ http://10.213.5.100/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.35us    1.91ms  38.60ms   97.12%
    Req/Sec    10.74k   612.20    11.52k    82.00%
  Latency Distribution
     50%  490.00us
     75%  610.00us
     90%  800.00us
     99%   38.60ms
  53461 requests in 5.00s, 14.67MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  10692.20
Transfer/sec:      2.93MB
"""


def test_percentiles_rate_and_errors():
    found = parse_wrk(REPORT)
    assert found.p50_ms == pytest.approx(0.49)
    assert found.p99_ms == pytest.approx(38.6)
    assert found.requests_per_s == pytest.approx(10692.2)
    assert found.requests == 53461
    assert found.errors == 2 + 1 + 4


def test_seconds_and_a_clean_run():
    text = REPORT.replace("38.60ms\n  53461", "1.20s\n  53461")
    text = "\n".join(
        line for line in text.splitlines() if "Socket errors" not in line and "Non-2xx" not in line
    )
    found = parse_wrk(text)
    assert found.p99_ms == pytest.approx(1200.0) and found.errors == 0


def test_no_report_is_an_error():
    with pytest.raises(LabkitError, match="no report"):
        parse_wrk("unable to connect to 10.213.5.100:80 Connection refused\n")
