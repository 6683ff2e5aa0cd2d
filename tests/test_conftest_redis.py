from __future__ import annotations

import redis


def test_redis_fixture_is_real_and_empty(redis_url: str, redis_client: redis.Redis) -> None:
    other = redis.Redis.from_url(redis_url)
    assert other.dbsize() == 0
    other.set("probe", "1")
    assert redis_client.get("probe") == b"1"
    assert "redis_version" in other.info("server")
