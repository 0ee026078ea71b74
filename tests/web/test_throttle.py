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


def test_minting_tokens_does_not_multiply_a_customers_allowance(
    db_url: str, tmp_path: Path, api: Api
) -> None:
    config = web_config(db_url, tmp_path, web={"api_requests_per_minute": 3})
    with TestClient(create_app(config, FixedClock())) as client:
        made = client.post("/api/v1/tokens", json={"name": "second"}, headers=api.acme)
        assert made.status_code == 201
        second = bearer(made.json()["token"])
        assert [client.get(SERVERS, headers=h).status_code for h in (api.acme, second)] == [
            200,
            200,
        ]
        assert client.get(SERVERS, headers=second).status_code == 429
        assert client.get(SERVERS, headers=api.acme).status_code == 429
        # Another customer has its own allowance.
        assert client.get(SERVERS, headers=api.globex).status_code == 200


def test_a_body_is_never_parsed_for_a_request_without_a_valid_token(
    db_url: str, tmp_path: Path, api: Api
) -> None:
    config = web_config(db_url, tmp_path, web={"api_unauthenticated_per_minute": 2})
    with TestClient(create_app(config, FixedClock())) as client:
        broken = "{" + " " * 1_000_000
        answers = [
            client.post(SERVERS, content=broken, headers={"Content-Type": "application/json"})
            for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [401, 401, 429]
        assert answers[0].json() == {"error": "missing bearer token (Authorization: Bearer TOKEN)"}
        # With a valid token the same body is the caller's own mistake, named as such.
        client_of_acme = TestClient(create_app(config, FixedClock()))
        with client_of_acme:
            invalid = client_of_acme.post(
                SERVERS,
                content="{",
                headers={**api.acme, "Content-Type": "application/json"},
            )
        assert invalid.status_code == 422
        assert invalid.json() == {"error": "body: not valid JSON"}


def test_an_unknown_api_path_needs_a_token_and_the_openapi_document_does_not(api: Api) -> None:
    assert api.client.get("/api/v1/nothing-here").status_code == 401
    assert api.client.get("/api/v1/nothing-here", headers=api.acme).status_code == 404
    assert api.client.get("/api/v1/openapi.json").status_code == 200


def test_the_buckets_are_bounded_least_recently_used_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("osfmilter.web.throttle.MAX_KEYS", 3)
    buckets = TokenBuckets(1, Seconds())
    for key in ("a", "b", "c"):
        assert buckets.take(key) == 0
    assert buckets.take("a") > 0  # a: used, and now the most recent
    assert buckets.take("d") == 0  # b, the least recently used, is dropped
    assert len(buckets) == 3
    assert buckets.take("a") > 0 and buckets.take("c") > 0
    assert buckets.take("b") == 0  # forgotten: a full bucket again


def test_an_ipv6_client_is_throttled_by_its_64(db_url: str, tmp_path: Path) -> None:
    config = web_config(db_url, tmp_path, web={"api_unauthenticated_per_minute": 2})
    app = create_app(config, FixedClock())
    with TestClient(app):
        answers = [
            TestClient(app, client=(f"2001:db8:1:2::{n}", 50000)).get(SERVERS).status_code
            for n in range(1, 4)
        ]
        other = TestClient(app, client=("2001:db8:1:3::1", 50000)).get(SERVERS).status_code
    assert answers == [401, 401, 429]
    assert other == 401
