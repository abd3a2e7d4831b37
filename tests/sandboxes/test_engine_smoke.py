"""The Docker engine really runs our containers, isolated the way sandboxes need."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxes.engine import LABEL, engine_status

pytestmark = pytest.mark.docker


def _run(docker: Any, image: str, script: str, **kwargs: Any) -> tuple[int, str]:
    container = docker.containers.run(
        image,
        ["sh", "-c", script],
        detach=True,
        network_mode="none",
        user="1000:1000",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        labels={LABEL: "test"},
        **kwargs,
    )
    try:
        result = container.wait(timeout=60)
        return int(result["StatusCode"]), container.logs().decode()
    finally:
        container.remove(force=True)


def test_engine_status_reports_version(docker: Any) -> None:
    status = engine_status()
    assert status.available, status.detail
    assert "Docker engine" in status.detail


def test_container_runs_as_unprivileged_user_without_network(docker: Any, busybox_tag: str) -> None:
    code, out = _run(
        docker, busybox_tag, "id -u; ls /sys/class/net; wget -T 2 -q -O- http://1.1.1.1 || echo NO_NETWORK"
    )
    assert code == 0
    lines = out.split()
    assert lines[0] == "1000"
    assert "eth0" not in lines  # only the loopback interface exists
    assert "NO_NETWORK" in out


def test_workspace_is_writable_and_root_is_not(docker: Any, busybox_tag: str) -> None:
    code, out = _run(
        docker,
        busybox_tag,
        "echo data > /workspace/f && cat /workspace/f; (echo x > /etc/evil) 2>/dev/null || echo DENIED",
        read_only=True,
        tmpfs={"/workspace": "uid=1000,gid=1000,size=16m"},
    )
    assert code == 0
    assert out.splitlines() == ["data", "DENIED"]


def test_no_labelled_container_survives(docker: Any, busybox_tag: str) -> None:
    _run(docker, busybox_tag, "true")
    assert docker.containers.list(all=True, filters={"label": f"{LABEL}=test"}) == []
