"""The windows endpoints fuzzed from the OpenAPI document (schemathesis, in-process over ASGI):
no request, valid or not, to a window or a session store gets a 5xx; a valid one gets 200 or a
400 that says why."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from processor.query.server import build_app
from processor.query.source import Owners
from tests.unit.query.test_window_queries import KEYS, TASKS, Instance, backends

WINDOW_PATHS = ("/v1/stores/{store}/windows/{key}", "/v1/stores/{store}/windows")


def _app_schema() -> schemathesis.schemas.BaseSchema:
    instance = Instance("i1", backends())
    instance.table = {t: Owners("i1", ()) for t in TASKS}
    return schemathesis.openapi.from_asgi("/openapi.json", build_app(instance, token=None))


@pytest.mark.parametrize("store", ["per-minute", "sessions"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_to_the_windows_endpoints_is_a_server_error(
    store: str, mode: GenerationMode
) -> None:
    schema = _app_schema()
    operations = [
        result.ok() for result in schema.get_all_operations() if result.ok().path in WINDOW_PATHS
    ]
    assert len(operations) == 2
    answered: list[int] = []
    failures: list[str] = []
    for operation in operations:
        pins = [{"store": store}]
        if operation.get_parameter("key", "path"):
            pins.append({"store": store, "key": KEYS[5]})
        for pinned in pins:

            @settings(
                max_examples=25,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=pinned))
            def send(case: schemathesis.Case) -> None:
                response = case.call()
                answered.append(response.status_code)
                if response.status_code >= 500 or (
                    mode is GenerationMode.POSITIVE and response.status_code not in (200, 400)
                ):
                    failures.append(
                        f"{response.status_code} {response.text[:200]} for "
                        f"{case.path_parameters} {case.query}"
                    )

            send()
    assert len(answered) > 50
    assert not failures, "\n".join(failures[:10])
    if mode is GenerationMode.POSITIVE:
        assert answered.count(200) > len(answered) // 4, "most valid requests are answered"
