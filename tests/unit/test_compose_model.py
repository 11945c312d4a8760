"""The compose model and the restart-vs-rebuild decision (pure)."""
from __future__ import annotations

import json

import pytest

from remediate.facts.compose import parse_model
from remediate.facts.containers import container

from remediate.steps.compose import decide_reload
from remediate.core.errors import StepError

CONFIG = {
    "name": "edms",
    "services": {
        "backend": {"build": {"context": "/srv/edms/backend", "network": "host"}, "image": "edms-backend:latest",
                    "healthcheck": {"test": ["CMD", "true"]}},
        "celery_beat": {"image": "edms-backend:latest", "command": ["celery", "-A", "edms", "beat"]},
        "celery_worker": {"image": "edms-backend:latest",
                          "volumes": [{"type": "bind", "source": "/srv/edms/backend", "target": "/app"}]},
        "redis": {"image": "redis:7"},
        "solo": {"build": "/srv/edms/solo"},
    },
}
MODEL = parse_model(json.dumps(CONFIG), "/srv/edms")


def test_model_parses_builds_images_mounts() -> None:
    assert MODEL.name == "edms"
    assert MODEL.builder("celery_beat").name == "backend"
    assert MODEL.builder("solo").name == "solo"
    assert MODEL.services["celery_worker"].mounts[0].target == "/app"
    assert MODEL.services["backend"].healthcheck and not MODEL.services["celery_beat"].healthcheck
    assert MODEL.services["celery_beat"].command == ("celery", "-A", "edms", "beat")


@pytest.mark.parametrize("service, changed, action, reason", [
    ("celery_beat", ["/srv/edms/backend/edms/settings/base.py"], "rebuild",
     "edms/settings/base.py is in build context ./backend, not mounted; image built by backend"),
    ("backend", ["/srv/edms/backend/edms/settings/base.py"], "rebuild",
     "backend/edms/settings/base.py is in build context ./backend, not mounted"),
    ("celery_worker", ["/srv/edms/backend/apps/audit/apps.py"], "restart", "backend/apps/audit/apps.py is bind-mounted at /app"),
    ("celery_beat", ["/etc/other.conf"], "restart", "/etc/other.conf neither mounted nor in a build context"),
    ("celery_beat", [], "restart", "no changed files"),
])
def test_reload_decision(service: str, changed: list[str], action: str, reason: str) -> None:
    decision = decide_reload(MODEL, service, changed)
    assert decision.action == action
    assert reason in decision.reason


def test_beat_reason_reads_like_the_issue() -> None:
    decision = decide_reload(MODEL, "celery_beat", ["/srv/edms/backend/edms/settings/base.py"])
    assert f"{decision.service}: {decision.action} ({decision.reason})".startswith(
        "celery_beat: rebuild (backend/edms/settings/base.py is in build context ./backend, not mounted")


def test_unknown_service_and_unbuildable_image() -> None:
    with pytest.raises(StepError, match="no service 'nope'.*services: backend"):
        MODEL.service("nope")
    with pytest.raises(StepError, match="no service of /srv/edms builds"):
        MODEL.builder("redis")


def test_v1_yaml_config_and_short_volumes() -> None:
    model = parse_model("services:\n  web:\n    build: ./app\n    volumes: ['./app:/code:ro', 'data:/data']\n", "/p")
    web = model.services["web"]
    assert web.build_context == "/p/app"
    assert [(m.type, m.source, m.target) for m in web.mounts] == [("bind", "/p/app", "/code"), ("volume", "data", "/data")]


def test_containers_parse_state_and_times() -> None:
    doc = [{"Id": "abc", "Name": "/edms-celery_beat-1", "Image": "sha256:1",
            "State": {"Status": "running", "Running": True, "StartedAt": "2026-11-24T02:03:04.123456789Z", "ExitCode": 0},
            "Config": {"Labels": {"com.docker.compose.service": "celery_beat"}}, "RestartCount": 0, "Mounts": []}]
    (c,) = [container(d) for d in doc]
    assert c.service == "celery_beat" and c.running and c.started_at is not None
    assert c.started_at.isoformat() == "2026-11-24T02:03:04.123456+00:00"
