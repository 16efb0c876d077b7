"""`--workers`: the count, the refusal without a shared broker, and the config a worker serves
(the supervisor's ports; the admin listener on worker 0 only)."""

from __future__ import annotations

import json
import os

import pytest

from bridge.routing.config import parse_config
from bridge.server import workers

BASE = """\
listen: {http: "127.0.0.1:0", admin: "127.0.0.1:9901"}
upstreams: {app: {url: "http://127.0.0.1:9"}}
routes: [{path: /, upstream: app}]
"""


def test_count_and_auto() -> None:
    assert workers.parse_workers("1") == 1 and workers.parse_workers("8") == 8
    assert workers.parse_workers("auto") == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "x", "1.5", "257", ""):
        with pytest.raises(ValueError, match="--workers"):
            workers.parse_workers(bad)


def test_several_workers_need_a_shared_broker() -> None:
    memory = parse_config(BASE)
    assert workers.refusal(memory, 1) is None
    problem = workers.refusal(memory, 3)
    assert problem is not None and "needs a shared broker" in problem
    shared = parse_config(BASE + "broker: redis://127.0.0.1:6379/0\n")
    assert workers.refusal(shared, 3) is None


def test_a_worker_serves_the_supervisors_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(BASE)
    monkeypatch.setenv(workers.ENV_PORTS, json.dumps({"http": 18080, "admin": 9901}))
    monkeypatch.setenv(workers.ENV_INDEX, "0")
    first = workers.worker_config(config)
    assert first.listen.http == ("127.0.0.1", 18080) and first.listen.admin == ("127.0.0.1", 9901)
    monkeypatch.setenv(workers.ENV_INDEX, "1")
    other = workers.worker_config(config)
    assert other.listen.http == ("127.0.0.1", 18080) and other.listen.admin is None
    quic = parse_config(BASE.replace("listen: {", 'listen: {https: ":8443", http3: ":8443", '))
    assert quic.listen.http3 is not None and workers.worker_config(quic).listen.http3 is None
    monkeypatch.setenv(workers.ENV_INDEX, "0")
    assert workers.worker_config(quic).listen.http3 == quic.listen.http3
    monkeypatch.setenv(workers.ENV_INDEX, "1")
    assert workers.plan("r.yaml", config, "5") == other  # a worker never supervises
    monkeypatch.delenv(workers.ENV_INDEX)
    assert workers.plan("r.yaml", config, "1") is config
    assert workers.plan("r.yaml", config, "nope") == 2
