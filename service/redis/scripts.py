"""Every Lua script the package runs, in one place.

Scripts build key names from prefixes passed in ARGV, which is fine on a single Redis (or a
replica) but not on Redis Cluster, where a version's keys would have to share a hash tag.
Each runs atomically on the server: the reason most of them exist (a check and a write, or
a chain of reads, with no other client in between).
"""

from __future__ import annotations

CURRENT_LUA = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('HGETALL', ARGV[1] .. v .. ARGV[2])}
"""

# Returns false for an unknown id, else {blob, id_1, ..., id_n} with '' for a neighbour row
# whose metadata is missing (never expected in a complete version).
NEIGHBOURS_LUA = """
local row = redis.call('HGET', KEYS[1], ARGV[3])
if not row then return false end
local blob = redis.call('GET', ARGV[1] .. row)
if not blob then return false end
local n = math.floor(#blob / 6)
local out = {blob}
if n == 0 then return out end
local mkeys = {}
for i = 1, n do
  mkeys[i] = ARGV[2] .. string.format('%d', struct.unpack('<i4', blob, (i - 1) * 4 + 1))
end
local metas = redis.call('MGET', unpack(mkeys))
for i = 1, n do
  local id = ''
  if metas[i] then id = string.match(metas[i], '^%["([^"]*)"') or '' end
  out[i + 1] = id
end
return out
"""

# The read behind /related: id -> row -> neighbour list -> the source's and the first
# ARGV[4] (-1: all) neighbours' metadata, all raw. It only follows keys and never parses
# metadata: Lua string work per neighbour (matching out ids, as NEIGHBOURS_LUA does) costs
# more Redis time than the MGET itself, and the API decodes just the few metas it shows.
# Returns false for an unknown id, else {blob, source meta, meta_1, ..., meta_m} with a nil
# for missing metadata.
RELATED_LUA = """
local row = redis.call('HGET', KEYS[1], ARGV[3])
if not row then return false end
local blob = redis.call('GET', ARGV[1] .. row)
if not blob then return false end
local n = math.floor(#blob / 6)
local limit = tonumber(ARGV[4])
if limit < 0 or limit > n then limit = n end
local mkeys = {ARGV[2] .. row}
for i = 1, limit do
  mkeys[i + 1] = ARGV[2] .. string.format('%d', struct.unpack('<i4', blob, (i - 1) * 4 + 1))
end
local out = redis.call('MGET', unpack(mkeys))
table.insert(out, 1, blob)
return out
"""

# The read behind /related when the metadata is cached in the process: id -> row -> list.
# Returns false for an unknown id, else {row, blob}.
ROW_LIST_LUA = """
local row = redis.call('HGET', KEYS[1], ARGV[2])
if not row then return false end
local blob = redis.call('GET', ARGV[1] .. row)
if not blob then return false end
return {row, blob}
"""

# Returns one metadata blob per id, '' for an unknown id.
ARTICLES_LUA = """
local n = #ARGV - 1
local out = {}
if n == 0 then return out end
local rows = redis.call('HMGET', KEYS[1], unpack(ARGV, 2))
local mkeys, pos = {}, {}
for i = 1, n do
  out[i] = ''
  if rows[i] then
    mkeys[#mkeys + 1] = ARGV[1] .. rows[i]
    pos[#pos + 1] = i
  end
end
if #mkeys > 0 then
  local metas = redis.call('MGET', unpack(mkeys))
  for j = 1, #mkeys do
    if metas[j] then out[pos[j]] = metas[j] end
  end
end
return out
"""

# Returns, per id, its row ('' if unknown) and its neighbour blob ('' if missing).
HISTORY_LUA = """
local n = #ARGV - 1
local out = {}
if n == 0 then return out end
local rows = redis.call('HMGET', KEYS[1], unpack(ARGV, 2))
for i = 1, n do
  local row = rows[i]
  local blob = ''
  if row then
    blob = redis.call('GET', ARGV[1] .. row) or ''
  else
    row = ''
  end
  out[2 * i - 1] = row
  out[2 * i] = blob
end
return out
"""

# KEYS: the version's id index, the reader's seen set, the hour's bucket, the history list (or
# the seen key again when there is none: unused then).
# ARGV: article, now (s), window (s), seen max, weight, bucket size, bucket ttl, history max
# (0: no history), history ttl. One script, so that the id check, "was this reader counted?"
# and the count cannot interleave with another event.
EVENT_LUA = """
local article = ARGV[1]
if redis.call('HEXISTS', KEYS[1], article) == 0 then return -1 end
local history_max = tonumber(ARGV[8])
if history_max > 0 then
  redis.call('LREM', KEYS[4], 0, article)
  redis.call('LPUSH', KEYS[4], article)
  redis.call('LTRIM', KEYS[4], 0, history_max - 1)
  redis.call('EXPIRE', KEYS[4], ARGV[9])
end
local weight = tonumber(ARGV[5])
if weight <= 0 then return 0 end
local now, window = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - window))
if redis.call('ZSCORE', KEYS[2], article) then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[2], now, article)
redis.call('EXPIRE', KEYS[2], window)
local size = tonumber(ARGV[6])
if redis.call('ZSCORE', KEYS[3], article) or redis.call('ZCARD', KEYS[3]) < size then
  redis.call('ZINCRBY', KEYS[3], weight, article)
else
  local low = redis.call('ZPOPMIN', KEYS[3])
  redis.call('ZADD', KEYS[3], tonumber(low[2]) + weight, article)
end
redis.call('EXPIRE', KEYS[3], ARGV[7])
return 1
"""

RELEASE_LUA = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)

REFRESH_LUA = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)
