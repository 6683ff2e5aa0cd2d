"""Editorial rules in Redis: the rule hash, its counter and its audit log, always together.

Rules live outside every version namespace (:data:`keys.RULES`, :data:`keys.RULES_SEQ`,
:data:`keys.RULES_LOG`), so a publish, a rollback or a prune never touches them. Every change
writes the rule, bumps the counter and appends the log entry in one script or one MULTI/EXEC:
a reader never sees a rule without its counter bump, nor a change the log lacks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import redis

from service.redis import keys
from service.redis.client import text
from service.rules.schema import MAX_RULES, stored_rule, too_many_rules
from service.rules.schema import strip_server_fields as body_of
from service.store.base import RuleChange, RuleSet, RulesReplaced

log = logging.getLogger(__name__)

# The audit log is capped (approximately): years of editing by a newsroom, bounded memory.
RULES_LOG_MAXLEN = 100_000
# Log entries read per XREVRANGE while looking for one rule's history.
HISTORY_CHUNK = 500

# KEYS: rules, seq, log. ARGV: id, rule JSON, by, at, log maxlen, max rules.
# {0} when the rule is new and the set already holds the most it may.
PUT_LUA = """
local before = redis.call('HGET', KEYS[1], ARGV[1])
if not before and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[6]) then return {0} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'seq', seq, 'op', 'put',
  'id', ARGV[1], 'by', ARGV[3], 'at', ARGV[4], 'before', before or '', 'after', ARGV[2])
return {seq, before}
"""

# KEYS: rules, seq, log. ARGV: id, by, at, log maxlen. nil when the rule is unknown.
DELETE_LUA = """
local before = redis.call('HGET', KEYS[1], ARGV[1])
if not before then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'seq', seq, 'op', 'delete',
  'id', ARGV[1], 'by', ARGV[2], 'at', ARGV[3], 'before', before, 'after', '')
return {seq, before}
"""


def encode_rule(rule: Mapping[str, Any]) -> str:
    """A stored rule as compact JSON (UTF-8 text, key order kept)."""
    return json.dumps(rule, ensure_ascii=False, separators=(",", ":"))


def _decode(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    value: dict[str, Any] = json.loads(raw)
    return value


class RedisRules:
    """The rules' Redis commands (callers never build a rules key or hold the raw replies)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._put = client.register_script(PUT_LUA)
        self._delete = client.register_script(DELETE_LUA)

    def seq(self) -> int:
        """The rules counter (0 before the first change)."""
        return int(self.client.get(keys.RULES_SEQ) or 0)

    def read(self) -> RuleSet:
        """Every rule and the counter, read in one transaction (so they belong together)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(keys.RULES_SEQ)
        pipe.hgetall(keys.RULES)
        raw_seq, raw_rules = pipe.execute()
        rules: dict[str, dict[str, Any]] = {}
        for raw_id, raw in raw_rules.items():
            rule_id = text(raw_id)
            try:
                rule = _decode(raw)
            except ValueError:
                # Only a hand edit of Redis can do this; the other rules must still apply.
                log.error("rule %r in %s is not JSON; skipped", rule_id, keys.RULES)
                continue
            if rule is not None:
                rules[rule_id] = rule
        return RuleSet(int(raw_seq or 0), rules)

    def put(self, rule: Mapping[str, Any]) -> RuleChange:
        """Create or replace a stored rule (its ``id``, ``updated_by``, ``updated_at`` set);
        :class:`RuleError` for a new rule beyond :data:`MAX_RULES`."""
        reply = self._put(
            keys=[keys.RULES, keys.RULES_SEQ, keys.RULES_LOG],
            args=[
                rule["id"],
                encode_rule(rule),
                rule["updated_by"],
                rule["updated_at"],
                RULES_LOG_MAXLEN,
                MAX_RULES,
            ],
        )
        if int(reply[0]) == 0:
            raise too_many_rules()
        return RuleChange(int(reply[0]), _decode(reply[1] if len(reply) > 1 else None))

    def delete(self, rule_id: str, *, by: str, at: str) -> RuleChange | None:
        """Delete a rule; ``None`` when there was none."""
        reply = self._delete(
            keys=[keys.RULES, keys.RULES_SEQ, keys.RULES_LOG],
            args=[rule_id, by, at, RULES_LOG_MAXLEN],
        )
        if not reply:
            return None
        return RuleChange(int(reply[0]), _decode(reply[1]))

    def replace(
        self, bodies: Mapping[str, Mapping[str, Any]], *, by: str, at: str
    ) -> RulesReplaced:
        """Make ``bodies`` the whole rule set (Algolia's clearExistingRules) in one MULTI/EXEC,
        retried if another change lands between the read and the write (WATCH)."""

        def attempt(pipe: redis.client.Pipeline) -> RulesReplaced:
            old_raw: Any = pipe.hgetall(keys.RULES)
            seq = int(pipe.get(keys.RULES_SEQ) or 0)
            old = {text(k): v for k, v in old_raw.items()}
            stored: dict[str, str] = {}
            changes: list[tuple[str, str, Any, str]] = []  # op, id, before, after
            added: list[str] = []
            changed: list[str] = []
            unchanged: list[str] = []
            for rule_id, body in bodies.items():
                before = old.get(rule_id)
                previous = _safe_decode(before)
                if previous is not None and body_of(previous) == body_of(body):
                    stored[rule_id] = text(before)
                    unchanged.append(rule_id)
                    continue
                after = encode_rule(stored_rule(rule_id, body, by=by, at=at))
                stored[rule_id] = after
                (changed if before is not None else added).append(rule_id)
                changes.append(("put", rule_id, before, after))
            removed = sorted(set(old) - set(bodies))
            changes += [("delete", rule_id, old[rule_id], "") for rule_id in removed]
            pipe.multi()
            if changes:
                seq += 1
                pipe.delete(keys.RULES)
                if stored:
                    pipe.hset(keys.RULES, mapping=stored)  # type: ignore[arg-type]
                pipe.set(keys.RULES_SEQ, seq)
                for op, rule_id, before, after in changes:
                    entry = {"seq": seq, "op": op, "id": rule_id, "by": by, "at": at}
                    entry |= {"before": before or "", "after": after}
                    pipe.xadd(
                        keys.RULES_LOG,
                        entry,  # type: ignore[arg-type]
                        maxlen=RULES_LOG_MAXLEN,
                        approximate=True,
                    )
            return RulesReplaced(seq, sorted(added), sorted(changed), removed, sorted(unchanged))

        result: Any = self.client.transaction(
            attempt,  # type: ignore[arg-type]  # typed as returning None; value_from_callable
            keys.RULES,
            keys.RULES_SEQ,
            value_from_callable=True,
        )
        replaced: RulesReplaced = result
        return replaced

    def history(self, rule_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Logged changes, newest first, at most ``limit`` (of one rule, or of all)."""
        out: list[dict[str, Any]] = []
        upper = "+"
        while len(out) < limit:
            chunk: Any = self.client.xrevrange(keys.RULES_LOG, max=upper, count=HISTORY_CHUNK)
            for _, fields in chunk:
                entry = _log_entry(fields)
                if rule_id is None or entry["id"] == rule_id:
                    out.append(entry)
                    if len(out) == limit:
                        break
            if len(chunk) < HISTORY_CHUNK:
                break
            upper = f"({text(chunk[-1][0])}"
        return out


def _safe_decode(raw: Any) -> dict[str, Any] | None:
    try:
        return _decode(raw)
    except ValueError:
        return None  # replaced by the import like any changed rule


def _log_entry(fields: Mapping[Any, Any]) -> dict[str, Any]:
    values = {text(k): text(v) for k, v in fields.items()}
    return {
        "seq": int(values.get("seq") or 0),
        "op": values.get("op", ""),
        "id": values.get("id", ""),
        "by": values.get("by", ""),
        "at": values.get("at", ""),
        "before": _safe_decode(values.get("before")),
        "after": _safe_decode(values.get("after")),
    }
