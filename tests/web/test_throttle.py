"""429: requests per minute per token, and per address without a valid token."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from osfmilter.config import config_from_dict
from osfmilter.errors import ConfigError
from osfmilter.web import create_app
from osfmilter.web.throttle import TokenBuckets
from tests.web.conftest import Api, FixedClock, bearer, web_config

SERVERS = "/api/v1/servers"


class Seconds:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_holds_a_minute_of_requests_and_refills_evenly() -> None:
    clock = Seconds()
    buckets = TokenBuckets(60, clock)
    assert all(buckets.take("a") == 0 for _ in range(60))
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0  # another key has its own
    clock.now = 0.5
    assert buckets.wait("a") == pytest.approx(0.5)
    clock.now = 1.0
    assert buckets.take("a") == 0 and buckets.take("a") > 0
    clock.now = 1000.0  # never more than a minute's worth
    assert sum(buckets.take("a") == 0 for _ in range(100)) == 60


def test_the_601st_request_of_a_token_in_a_minute_is_429(api: Api) -> None:
    for _ in range(600):
        assert api.client.get(SERVERS, headers=api.acme).status_code == 200
    refused = api.client.get(SERVERS, headers=api.acme)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json() == {"error": "too many requests; retry in 1 s"}
    # Another token is not affected, and the first one recovers with time.
    assert api.client.get(SERVERS, headers=api.globex).status_code == 200
    api.clock.seconds += 1.0
    assert api.client.get(SERVERS, headers=api.acme).status_code == 200


def test_guessing_tokens_from_one_address_is_throttled(
    db_url: str, tmp_path: Path, api: Api
) -> None:
    config = web_config(db_url, tmp_path, web={"api_unauthenticated_per_minute": 5})
    clock = FixedClock()
    with TestClient(create_app(config, clock)) as client:
        guesses = [bearer(f"osf_aaaaaaaa_{'a' * 31}{c}") for c in "abcde"]
        assert [client.get(SERVERS, headers=h).status_code for h in guesses] == [401] * 5
        refused = client.get(SERVERS, headers={})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        # While the address is throttled, no token is even looked at: a right
        # guess would answer like a wrong one.
        assert client.get(SERVERS, headers=api.acme).status_code == 429
        clock.seconds += 60
        assert client.get(SERVERS, headers=api.acme).status_code == 200


@pytest.mark.parametrize("key", ["api_requests_per_minute", "api_unauthenticated_per_minute"])
def test_the_limits_are_validated(key: str) -> None:
    assert getattr(config_from_dict({}).web, key) > 0
    with pytest.raises(ConfigError, match=key):
        config_from_dict({"web": {key: 0}})
