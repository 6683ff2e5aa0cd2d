"""One contract for every store: the same tests against LocalStore, RedisStore on a real
redis-server, and VersionCache wrapping each (as implicit runs one test mixin against every
recommender). A new store proves itself by adding a class at the bottom.

Where a store legitimately cannot do something (a model directory takes no updates, an
in-process store has no breakers and no publish time), the difference is a capability flag of
its class, asserted both ways, never a skip: a missing method fails here, it is not hidden.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import time
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import pytest
import redis

from models.artifact import LoadedModel, load_model, save_model
from models.config import ModelConfig
from models.model import RelatedModel
from models.records import Article, published_timestamp, read_articles
from service.redis import keys
from service.redis.breaker import CircuitBreaker
from service.redis.publish import publish
from service.redis.store import RedisStore
from service.redis.writer import Writer
from service.rules.schema import stored_rule
from service.store.base import (
    COUNTED,
    EMPTY_RULES,
    NOT_COUNTED,
    TRENDING_LIMIT,
    UNKNOWN_ARTICLE,
    HistorySettings,
    Reader,
    Store,
    UpdatesUnsupported,
)
from service.store.cache import VersionCache
from service.store.local import LocalStore, article_meta
from tests.paths import SAMPLE_ARTICLES

HOUR = 3600
# "Now" of the event tests: ten minutes into an hour, so "an hour later" is another bucket.
T0 = 472_222 * HOUR + 600
# No trending cache: each call must see the events just recorded.
SETTINGS = HistorySettings(cache_seconds=0)
UNKNOWN = "no-such-article"
OTHER_VERSION = "20000101T000000Z-0000000000"  # a version no store holds
USER = Reader("u", "u1")
ADDRESS = Reader("a", "10.0.0.1")
# Stored scores: Redis keeps them as uint16 fractions of SCORE_SCALE, the model as floats.
SCORE_TOLERANCE = 1.0 / keys.SCORE_SCALE


class StoreContract:
    """The tests every :class:`Store` passes; a subclass gives ``open_store`` and the flags."""

    # Applies incremental updates (enqueue_update, update_result, drift); otherwise
    # UpdatesUnsupported / None, as a model directory.
    TAKES_UPDATES: ClassVar[bool]
    # Behind a network: circuit breakers and a publish time; otherwise none of either.
    REMOTE: ClassVar[bool]
    # A history's retention runs on the ``now`` the events and reads pass; otherwise on the
    # server's own clock (a Redis key's EXPIRE). The same in production, where ``now`` is the
    # wall clock; apart only under a test's or a replay's clock.
    RETENTION_FOLLOWS_NOW: ClassVar[bool]

    def open_store(self, loaded: LoadedModel, request: pytest.FixtureRequest) -> Store:
        """A new store serving ``loaded`` and nothing else (no events, no other version)."""
        raise NotImplementedError  # every concrete class overrides it

    @pytest.fixture
    def store(self, loaded: LoadedModel, request: pytest.FixtureRequest) -> Iterator[Store]:
        store = self.open_store(loaded, request)
        yield store
        store.close()

    @pytest.fixture
    def version(self, store: Store) -> str:
        info = store.current_version()
        assert info is not None
        return info.version

    @pytest.fixture
    def ids(self, loaded: LoadedModel) -> list[str]:
        """Article ids of the session model, in model order."""
        return [a.id for a in loaded.articles]

    # ------------------------------------------------------------------------- version
    def test_current_version_describes_the_model(self, store: Store, loaded: LoadedModel) -> None:
        info = store.current_version()
        assert info is not None
        assert info.version == loaded.version
        assert info.built_at == str(loaded.manifest["created_at"])
        assert info.articles == len(loaded.articles)
        assert info.k == loaded.model.neighbours_.shape[1]
        assert info.seq == 0
        if self.REMOTE:
            assert info.published_at
        else:
            assert info.published_at is None
        assert store.current_version() == info

    # ------------------------------------------------------------------------- lists
    def test_neighbours_of_a_known_id(
        self, store: Store, version: str, loaded: LoadedModel, ids: list[str]
    ) -> None:
        for article_id in ids[:20]:
            got = store.neighbours(version, article_id)
            want = loaded.model.neighbours(article_id)
            assert got is not None
            assert [n.id for n in got] == [i for i, _ in want]
            np.testing.assert_allclose(
                [n.score for n in got], [s for _, s in want], atol=SCORE_TOLERANCE
            )
            assert article_id not in {n.id for n in got}
            scores = [n.score for n in got]
            assert scores == sorted(scores, reverse=True)

    def test_neighbours_of_an_unknown_id_or_version(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        assert store.neighbours(version, UNKNOWN) is None
        assert store.neighbours(OTHER_VERSION, ids[0]) is None

    def test_articles_are_batched_in_order_with_unknowns_as_none(
        self, store: Store, version: str, loaded: LoadedModel
    ) -> None:
        first, second = loaded.articles[3], loaded.articles[7]
        got = store.articles(version, [second.id, UNKNOWN, first.id, second.id])
        want = [article_meta(loaded.model, a) for a in (second, first)]
        assert got == [want[0], None, want[1], want[0]]
        assert store.articles(version, []) == []
        assert store.articles(OTHER_VERSION, [first.id]) == [None]

    def test_articles_of_many_ids_at_once(self, store: Store, version: str, ids: list[str]) -> None:
        asked = [*ids, UNKNOWN] * 3  # more than one Redis script call holds
        got = store.articles(version, asked)
        assert [None if m is None else m.id for m in got] == [
            None if i == UNKNOWN else i for i in asked
        ]

    def test_related_articles_compose_neighbours_and_articles(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        article_id = ids[0]
        neighbours = store.neighbours(version, article_id)
        assert neighbours is not None and len(neighbours) > 2
        read = store.related_articles(version, article_id)
        assert read is not None and read.complete
        assert read.source == store.articles(version, [article_id])[0]
        assert list(read.neighbours) == neighbours
        assert list(read.metas) == store.articles(version, [n.id for n in neighbours])
        limited = store.related_articles(version, article_id, limit=2)
        assert limited is not None and not limited.complete
        assert list(limited.neighbours) == neighbours[:2] and len(limited.metas) == 2
        assert store.related_articles(version, UNKNOWN) is None

    def test_latest_newest_first_with_and_without_section(
        self, store: Store, version: str, loaded: LoadedModel
    ) -> None:
        def newest(articles: Sequence[Article]) -> list[str]:
            # Redis's sorted-set order: time, then id, both descending.
            ranked = sorted(
                articles, key=lambda a: (published_timestamp(a.published_at), a.id), reverse=True
            )
            return [a.id for a in ranked]

        everything = newest(loaded.articles)
        assert store.latest(version, None, 10) == everything[:10]
        assert store.latest(version, None, 10_000) == everything
        earnings = newest([a for a in loaded.articles if a.section == "Earnings"])
        assert 5 < len(earnings) < len(everything)
        # Sections match case-insensitively.
        assert store.latest(version, "earnings", 5) == earnings[:5]
        assert store.latest(version, "EARNINGS", 10_000) == earnings
        assert store.latest(version, "no such section", 5) == []
        assert store.latest(version, None, 0) == []
        assert store.latest(OTHER_VERSION, None, 5) == []

    def test_latest_breaks_ties_by_id_and_lists_undated_last(
        self, tied: LoadedModel, request: pytest.FixtureRequest
    ) -> None:
        store = self.open_store(tied, request)
        try:
            version = tied.version
            ranked = sorted(
                tied.articles, key=lambda a: (published_timestamp(a.published_at), a.id)
            )[::-1]
            expected = [a.id for a in ranked]
            assert store.latest(version, None, 100) == expected
            undated = [a.id for a in ranked if a.published_at is None]
            assert len(undated) > 1 and expected[-len(undated) :] == undated
            earnings = [a.id for a in ranked if a.section.casefold() == "earnings"]
            assert store.latest(version, "eArnings", 100) == earnings
            assert store.latest(version, " ", 100) == []
        finally:
            store.close()

    def test_ranking_source_reads_the_version(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        info = store.current_version()
        assert info is not None
        source = store.ranking_source(info)
        lists = source.history_lists([ids[0], UNKNOWN, ids[1]])
        assert lists.keys[1] is None and lists.counts[1] == 0
        first, second = lists.keys[0], lists.keys[2]
        assert first is not None and second is not None
        described = source.describe([first, second])
        assert [m.id if m else None for m in described] == [ids[0], ids[1]]
        expected = store.neighbours(version, ids[0])
        assert expected is not None and lists.counts[0] == len(expected)
        listed = source.describe([int(k) for k in lists.neighbours[: lists.counts[0]]])
        assert [m.id if m else None for m in listed] == [n.id for n in expected]
        np.testing.assert_allclose(
            lists.scores[: lists.counts[0]], [n.score for n in expected], atol=SCORE_TOLERANCE
        )
        assert source.sections([first]) == [described[0].section if described[0] else None]

    # ------------------------------------------------------------------------- events
    def test_an_unknown_article_is_refused_and_nothing_is_stored(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        assert store.record_event(version, UNKNOWN, USER, T0, SETTINGS) == UNKNOWN_ARTICLE
        assert store.record_event(OTHER_VERSION, ids[0], USER, T0, SETTINGS) == UNKNOWN_ARTICLE
        assert store.reader_history(USER.identity, 10, T0, SETTINGS) == []
        assert store.trending(T0, SETTINGS) == []
        # Nothing was remembered either: the reader's first real read still counts.
        assert store.record_event(version, ids[0], USER, T0, SETTINGS) == COUNTED

    def test_a_reader_counts_once_per_article_and_window(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        a, b = ids[:2]
        window = SETTINGS.window_hours * HOUR
        assert store.record_event(version, a, USER, T0, SETTINGS) == COUNTED
        assert store.record_event(version, a, USER, T0 + 5, SETTINGS) == NOT_COUNTED
        assert store.record_event(version, b, USER, T0 + 5, SETTINGS) == COUNTED
        assert store.record_event(version, a, ADDRESS, T0 + 5, SETTINGS) == COUNTED
        # Still in the window at its very end; counted again once it is over.
        assert store.record_event(version, a, USER, T0 + window, SETTINGS) == NOT_COUNTED
        assert store.record_event(version, a, USER, T0 + window + 1, SETTINGS) == COUNTED

    def test_event_times_count_in_whole_seconds(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        window = SETTINGS.window_hours * HOUR
        assert store.record_event(version, ids[0], USER, T0 + 0.9, SETTINGS) == COUNTED
        # Counted at second T0: the window ends with second T0 + window, whatever the fraction.
        late = T0 + window + 0.95
        # Another reader's event at that moment forgets nothing of this one's either.
        assert store.record_event(version, ids[1], ADDRESS, late, SETTINGS) == COUNTED
        assert store.record_event(version, ids[0], USER, late, SETTINGS) == NOT_COUNTED
        assert store.record_event(version, ids[0], USER, T0 + window + 1, SETTINGS) == COUNTED

    def test_signed_readers_weigh_one_and_addresses_less(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        a, b, c = ids[:3]
        store.record_event(version, a, USER, T0, SETTINGS)
        store.record_event(version, b, ADDRESS, T0, SETTINGS)
        store.record_event(version, c, Reader("a", "10.0.0.2"), T0, SETTINGS)
        store.record_event(version, c, ADDRESS, T0, SETTINGS)
        assert store.trending(T0, SETTINGS) == [
            (a, 1.0),
            (c, 2 * SETTINGS.anonymous_weight),
            (b, SETTINGS.anonymous_weight),
        ]

    def test_events_without_a_reader_or_weight_count_for_nothing(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        weightless = HistorySettings(cache_seconds=0, anonymous_weight=0.0)
        assert store.record_event(version, ids[0], None, T0, SETTINGS) == NOT_COUNTED
        assert store.record_event(version, ids[0], ADDRESS, T0, weightless) == NOT_COUNTED
        assert store.trending(T0, SETTINGS) == []
        # An address has no history, even one that looks like a user id.
        assert store.reader_history(ADDRESS.identity, 10, T0, SETTINGS) == []

    def test_a_reader_counted_for_too_many_articles_stops_counting(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        capped = HistorySettings(cache_seconds=0, seen_max=3)
        outcomes = [store.record_event(version, i, USER, T0, capped) for i in ids[:5]]
        assert outcomes == [COUNTED] * 3 + [NOT_COUNTED] * 2
        # Its history is still kept: the cap is on what it counts for, not what it reads.
        assert store.reader_history(USER.identity, 10, T0, capped) == ids[:5][::-1]

    # ------------------------------------------------------------------------- histories
    def test_history_is_most_recent_first_and_capped(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        short = HistorySettings(cache_seconds=0, max_items=3)
        a, b, c, d = ids[:4]
        for step, article_id in enumerate([a, b, c, b, d]):
            store.record_event(version, article_id, USER, T0 + step, short)
        # A re-read moves to the front; the oldest falls off the end.
        assert store.reader_history(USER.identity, 10, T0 + 5, short) == [d, b, c]
        assert store.reader_history(USER.identity, 2, T0 + 5, short) == [d, b]
        assert store.reader_history(USER.identity, 0, T0 + 5, short) == []
        assert store.reader_history("someone-else", 10, T0 + 5, short) == []

    def test_history_expires_after_the_retention(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        if not self.RETENTION_FOLLOWS_NOW:
            # The server's clock: a one-second retention, waited out for real.
            short = HistorySettings(cache_seconds=0, ttl_seconds=1)
            store.record_event(version, ids[0], USER, T0, short)
            time.sleep(0.6)
            store.record_event(version, ids[1], USER, T0, short)
            time.sleep(0.6)
            # Retention runs from the last event.
            assert store.reader_history(USER.identity, 10, T0, short) == ids[1::-1]
            time.sleep(0.7)
            assert store.reader_history(USER.identity, 10, T0, short) == []
            return
        ttl = SETTINGS.ttl_seconds
        store.record_event(version, ids[0], USER, T0, SETTINGS)
        store.record_event(version, ids[1], USER, T0 + 100, SETTINGS)
        # Retention runs from the last event.
        assert store.reader_history(USER.identity, 10, T0 + 99 + ttl, SETTINGS) == ids[1::-1]
        assert store.reader_history(USER.identity, 10, T0 + 100 + ttl, SETTINGS) == []
        # A new event after expiry starts a new history.
        store.record_event(version, ids[2], USER, T0 + 200 + ttl, SETTINGS)
        assert store.reader_history(USER.identity, 10, T0 + 200 + ttl, SETTINGS) == [ids[2]]

    def test_erase_reader_removes_history_and_trending_record(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        store.record_event(version, ids[0], USER, T0, SETTINGS)
        store.record_event(version, ids[0], ADDRESS, T0, SETTINGS)
        store.erase_reader(USER.identity)
        assert store.reader_history(USER.identity, 10, T0, SETTINGS) == []
        # Its trending record is gone: the same read counts again (the counts stay).
        assert store.record_event(version, ids[0], USER, T0 + 1, SETTINGS) == COUNTED
        # Only that reader was forgotten.
        assert store.record_event(version, ids[0], ADDRESS, T0 + 1, SETTINGS) == NOT_COUNTED
        store.erase_reader("never-seen")

    # ------------------------------------------------------------------------- trending
    def test_trending_is_ordered_by_count_then_id(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        a, b, c = ids[:3]
        readers = [Reader("u", f"r{n}") for n in range(3)]
        for reader in readers:
            store.record_event(version, b, reader, T0, SETTINGS)
        for reader in readers[:2]:
            store.record_event(version, c, reader, T0, SETTINGS)
            store.record_event(version, a, reader, T0, SETTINGS)
        ties = sorted([a, c])
        assert store.trending(T0, SETTINGS) == [(b, 3.0), (ties[0], 2.0), (ties[1], 2.0)]

    def test_trending_decays_by_hour_and_reads_the_window_of_now(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        hourly = HistorySettings(cache_seconds=0, window_hours=3, half_life_hours=1.0)
        a, b = ids[:2]
        store.record_event(version, a, USER, T0, hourly)
        store.record_event(version, b, USER, T0 + HOUR, hourly)
        assert store.trending(T0, hourly) == [(a, 1.0)]
        assert store.trending(T0 + HOUR, hourly) == [(b, 1.0), (a, 0.5)]
        assert store.trending(T0 + 2 * HOUR, hourly) == [(b, 0.5), (a, 0.25)]
        assert store.trending(T0 + 3 * HOUR, hourly) == [(b, 0.25)]
        assert store.trending(T0 + 4 * HOUR, hourly) == []
        assert store.trending(T0 - HOUR, hourly) == []

    def test_trending_is_bounded_by_bucket_size_and_head(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        small = HistorySettings(cache_seconds=0, bucket_size=2, head=2)
        a, b, c = sorted(ids[:3])
        for n, article_id in enumerate([a, a, b, c]):
            store.record_event(version, article_id, Reader("u", f"r{n}"), T0, small)
        # Space-saving: c, new to a full bucket, replaces the least counted (b) with its count.
        assert store.trending(T0, small) == [(a, 2.0), (c, 2.0)]
        one = HistorySettings(cache_seconds=0, bucket_size=2, head=1)
        assert store.trending(T0, one) == [(c, 2.0)]  # the head: count, then id, descending

    def test_trending_returns_at_most_the_limit(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        assert len(ids) < TRENDING_LIMIT  # so: every article read, all of them listed
        many = HistorySettings(cache_seconds=0, seen_max=len(ids))
        for article_id in ids:
            store.record_event(version, article_id, USER, T0, many)
        assert sorted(store.trending(T0, many)) == sorted((i, 1.0) for i in ids)
        capped = HistorySettings(cache_seconds=0, head=7)
        assert len(store.trending(T0, capped)) == 7

    def test_trending_may_be_served_from_the_process_cache_for_its_seconds(
        self, store: Store, version: str, ids: list[str]
    ) -> None:
        cached = HistorySettings(cache_seconds=3600)
        a, b = ids[:2]
        store.record_event(version, a, USER, T0, cached)
        assert store.trending(T0, cached) == [(a, 1.0)]
        store.record_event(version, b, Reader("u", "other"), T0, cached)
        store.record_event(version, b, ADDRESS, T0, cached)
        # Within the cache time the same list comes back; other settings compute afresh.
        assert store.trending(T0, cached) == [(a, 1.0)]
        assert store.trending(T0, SETTINGS) == [(b, 1.5), (a, 1.0)]

    # ------------------------------------------------------------------------- updates
    def test_updates_are_queued_or_refused(
        self, store: Store, version: str, request: pytest.FixtureRequest
    ) -> None:
        assert store.writer_running() is False
        if not self.TAKES_UPDATES:
            with pytest.raises(UpdatesUnsupported):
                store.enqueue_update("delete", UNKNOWN, None, by="api")
            with pytest.raises(UpdatesUnsupported):
                store.update_result("1-0", 0.01)
            return
        entry = store.enqueue_update("delete", UNKNOWN, None, by="api")
        assert re.fullmatch(keys.ENTRY_ID_PATTERN, entry)
        # Nobody applies it: no result, within or without a wait.
        assert store.update_result(entry, 0) is None
        assert store.update_result(entry, 0.05) is None
        loaded: LoadedModel = request.getfixturevalue("loaded")
        client: redis.Redis = request.getfixturevalue("redis_client")
        with Writer(client, lambda _: loaded) as writer:
            assert store.writer_running() is True
            writer.run(once=True)
        assert store.writer_running() is False
        result = store.update_result(entry, 1.0)
        assert result is not None
        assert result["entry"] == entry and result["status"] == "rejected"
        assert result["error"] == "unknown article id"

    def test_drift(self, store: Store, version: str, loaded: LoadedModel) -> None:
        if not self.TAKES_UPDATES:
            assert store.drift(version, 0.1) is None
            return
        assert store.drift(version, 0.1) == {
            "upserts": 0,
            "deletes": 0,
            "base_articles": len(loaded.articles),
            "share": 0.0,
            "retrain_due": False,
        }
        assert store.drift(OTHER_VERSION, 0.1) is None

    # ------------------------------------------------------------------------- operations
    # ------------------------------------------------------------------------- rules
    def test_rules_start_empty(self, store: Store) -> None:
        assert store.rules() == EMPTY_RULES
        assert store.stored_rules() == EMPTY_RULES
        assert store.rule_history(None, 10) == []

    def test_rule_writes_are_stored_logged_or_refused(self, store: Store) -> None:
        at = "2026-12-04T10:00:00Z"
        first = stored_rule("r1", {"hide": ["a-1"]}, by="ed", at=at)
        if not self.TAKES_UPDATES:
            for write in (
                lambda: store.put_rule(first),
                lambda: store.delete_rule("r1", by="ed", at=at),
                lambda: store.replace_rules({}, by="ed", at=at),
            ):
                with pytest.raises(UpdatesUnsupported, match="RECS_RULES_FILE"):
                    write()
            assert store.rule_history("r1", 10) == []
            return
        assert store.put_rule(first).before is None
        assert store.stored_rules().rules == {"r1": first}
        deadline = time.monotonic() + 1.0  # the request path's cache: within a second
        while store.rules().seq != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.rules().rules == {"r1": first}
        done = store.replace_rules({"r2": {"hide_box": True}}, by="git", at=at)
        assert (done.added, done.removed, done.seq) == (["r2"], ["r1"], 2)
        assert store.delete_rule("r1", by="ed", at=at) is None
        gone = store.delete_rule("r2", by="ed", at=at)
        assert gone is not None and gone.seq == 3
        assert [e["op"] for e in store.rule_history(None, 10)] == ["delete", "delete", "put", "put"]
        assert [e["seq"] for e in store.rule_history("r1", 10)] == [2, 1]

    def test_ping(self, store: Store) -> None:
        assert store.ping() is True

    def test_breakers(self, store: Store) -> None:
        breakers = store.breakers()
        assert all(isinstance(b, CircuitBreaker) for b in breakers.values())
        if self.REMOTE:
            assert {"related", "events", "history", "trending"} <= set(breakers)
        else:
            assert breakers == {}


@pytest.fixture(scope="module")
def tied(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A small model whose articles share publish times, lack them, or differ in section case."""
    articles = read_articles([SAMPLE_ARTICLES]).articles[:12]
    same = articles[0].published_at
    edited = [
        dataclasses.replace(
            article,
            published_at=[same, None, article.published_at][n % 3],
            section=["Earnings", "earnings", "", "Deals"][n % 4],
        )
        for n, article in enumerate(articles)
    ]
    path = tmp_path_factory.mktemp("tied") / "model"
    save_model(RelatedModel(config=ModelConfig(k=4)).fit(edited), edited, path)
    return load_model(path)


# Every public method of Store and the contract test(s) covering it: a method added to the
# interface fails test_the_contract_covers_the_whole_interface until it is tested here.
COVERAGE = {
    "current_version": ["test_current_version_describes_the_model"],
    "neighbours": ["test_neighbours_of_a_known_id", "test_neighbours_of_an_unknown_id_or_version"],
    "articles": ["test_articles_are_batched_in_order_with_unknowns_as_none"],
    "related_articles": ["test_related_articles_compose_neighbours_and_articles"],
    "latest": [
        "test_latest_newest_first_with_and_without_section",
        "test_latest_breaks_ties_by_id_and_lists_undated_last",
    ],
    "ranking_source": ["test_ranking_source_reads_the_version"],
    "record_event": ["test_a_reader_counts_once_per_article_and_window"],
    "reader_history": ["test_history_is_most_recent_first_and_capped"],
    "erase_reader": ["test_erase_reader_removes_history_and_trending_record"],
    "trending": ["test_trending_decays_by_hour_and_reads_the_window_of_now"],
    "enqueue_update": ["test_updates_are_queued_or_refused"],
    "writer_running": ["test_updates_are_queued_or_refused"],
    "update_result": ["test_updates_are_queued_or_refused"],
    "drift": ["test_drift"],
    "rules": ["test_rules_start_empty", "test_rule_writes_are_stored_logged_or_refused"],
    "stored_rules": ["test_rule_writes_are_stored_logged_or_refused"],
    "put_rule": ["test_rule_writes_are_stored_logged_or_refused"],
    "delete_rule": ["test_rule_writes_are_stored_logged_or_refused"],
    "replace_rules": ["test_rule_writes_are_stored_logged_or_refused"],
    "rule_history": ["test_rules_start_empty", "test_rule_writes_are_stored_logged_or_refused"],
    "ping": ["test_ping"],
    "breakers": ["test_breakers"],
    "close": ["store"],  # every store fixture closes its store
}


def test_the_contract_covers_the_whole_interface() -> None:
    public = {name for name, _ in inspect.getmembers(Store, inspect.isfunction)}
    assert public == set(COVERAGE)
    for tests in COVERAGE.values():
        for name in tests:
            assert hasattr(StoreContract, name), name


def test_version_cache_delegates_every_method() -> None:
    """The wrapper overrides each method: none falls back to Store's default over ``inner``."""
    for name in COVERAGE:
        assert name in vars(VersionCache), name


# ----------------------------------------------------------------------------- the stores
class TestLocalStore(StoreContract):
    TAKES_UPDATES = False
    REMOTE = False
    RETENTION_FOLLOWS_NOW = True

    def open_store(self, loaded: LoadedModel, request: pytest.FixtureRequest) -> Store:
        return LocalStore(loaded)


class TestRedisStore(StoreContract):
    TAKES_UPDATES = True
    REMOTE = True
    # EXPIRE runs on Redis's clock; following ``now`` would need each list's last event time
    # stored beside it (one more key per reader).
    RETENTION_FOLLOWS_NOW = False

    def open_store(self, loaded: LoadedModel, request: pytest.FixtureRequest) -> Store:
        # redis_url: the test's own, empty database on the session's redis-server.
        publish(request.getfixturevalue("redis_client"), loaded)
        return RedisStore.from_url(request.getfixturevalue("redis_url"))


class TestCachedLocalStore(TestLocalStore):
    def open_store(self, loaded: LoadedModel, request: pytest.FixtureRequest) -> Store:
        return VersionCache(super().open_store(loaded, request), ttl=60)


class TestCachedRedisStore(TestRedisStore):
    def open_store(self, loaded: LoadedModel, request: pytest.FixtureRequest) -> Store:
        return VersionCache(super().open_store(loaded, request), ttl=60)
