"""REDIS_URL's Sentinel form: parsed once, refused clearly, handed to kombu as it reads it."""

from __future__ import annotations

import re

import pytest

from alfred.config import ConfigError, Settings
from alfred.redis_client import kombu_sentinel
from alfred.redis_url import SentinelUrl, is_sentinel, parse_sentinel_url

TWO = "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380/3?master_name=mymaster"


def test_every_sentinel_the_database_and_the_master_name():
    assert parse_sentinel_url(TWO) == SentinelUrl(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380)), master_name="mymaster", db=3
    )
    assert is_sentinel(TWO) and not is_sentinel("redis://localhost:6379/0")


def test_the_options_may_sit_on_any_part_and_the_port_defaults():
    parsed = parse_sentinel_url("sentinel://:p%40ss@a/2?master_name=m;sentinel://b:1")
    assert parsed.sentinels == (("a", 26379), ("b", 1))
    assert (parsed.db, parsed.master_name, parsed.password) == (2, "m", "p@ss")
    assert "p@ss" not in repr(parsed)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("sentinel://a:26379", "needs ?master_name"),
        ("sentinel://a:26379;redis://b:6379?master_name=m", "part 2 does not start"),
        ("sentinel://a:26379/x?master_name=m", "database must be a number"),
        ("sentinel://a:26379/1?master_name=m;sentinel://b/2", "disagree on the db"),
        ("sentinel://:x@a?master_name=m;sentinel://:y@b", "disagree on the password"),
        ("sentinel://a?master_name=m&ssl=true", "unknown sentinel option"),
        ("sentinel://a:port?master_name=m", "port that is not a number"),
    ],
)
def test_a_malformed_url_is_refused_at_start_up_with_the_reason(url, why, tmp_path):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_sentinel_url(url)
    with pytest.raises(ConfigError, match=re.escape(why)):
        Settings.from_env({"REDIS_URL": url})


def test_kombu_gets_every_sentinel_with_the_database_and_master_name_as_options():
    url, options = kombu_sentinel("sentinel://:s3cret@a:1;sentinel://b:2/4?master_name=m")
    # kombu reads the database and the password from the first URL only.
    assert url == "sentinel://:s3cret@a:1/4;sentinel://:s3cret@b:2/4"
    assert options["master_name"] == "m"


def test_the_wait_settings():
    assert Settings.from_env({}).redis_wait_replicas == 0
    settings = Settings.from_env({"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "250"})
    assert (settings.redis_wait_replicas, settings.redis_wait_timeout_ms) == (1, 250)
    with pytest.raises(ConfigError, match="REDIS_WAIT_TIMEOUT_MS must be at least 1"):
        Settings.from_env({"REDIS_WAIT_TIMEOUT_MS": "0"})
