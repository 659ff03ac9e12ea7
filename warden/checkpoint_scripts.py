"""Lua scripts of the Redis checkpoint saver: each call is one atomic round trip.

Every script receives the same eight keys of one thread, in this order, and
touches no other key. All eight carry the thread's hash tag, so the scripts run on
Redis Cluster as well as on a single server:

    1 idx     sorted set, all scores 0, members ``ns \\0 checkpoint_id``
    2 cp      hash, member -> msgpack [checkpoint type, checkpoint bytes, parent id]
    3 meta    hash, member -> msgpack [metadata type, metadata bytes]
    4 refs    hash, member -> msgpack list of the blob fields the checkpoint reads
    5 blobs   hash, ``ns \\0 channel \\0 version`` -> msgpack [type, bytes]
    6 writes  hash, ``member \\0 task_id \\0 idx`` -> msgpack pending write
    7 widx    sorted set, all scores 0, the field names of ``writes``
    8 keep    string, present only after ``persist``; it disables the TTL

ARGV[1] is always the TTL in seconds (0 = none). Only scripts and the shared
``touch`` helper call EXPIRE, so all keys of a thread share one deadline.
"""

from __future__ import annotations

# Namespaces never contain NUL (the saver rejects them), so the member range of
# namespace ns is the open interval (ns\0, ns\1) in lexicographic order.
_PRELUDE = r"""
local function touch(ttl)
  if ttl > 0 and redis.call('EXISTS', KEYS[8]) == 0 then
    for i = 1, 7 do
      redis.call('EXPIRE', KEYS[i], ttl)
    end
  end
end

local function hmget_all(key, fields)
  local out = {}
  local n = #fields
  local i = 1
  while i <= n do
    local j = math.min(i + 499, n)
    local part = redis.call('HMGET', key, unpack(fields, i, j))
    for k = 1, #part do
      out[#out + 1] = part[k]
    end
    i = j + 1
  end
  return out
end

local function load(member)
  local record = redis.call('HGET', KEYS[2], member)
  if not record then
    return false
  end
  local meta = redis.call('HGET', KEYS[3], member)
  local refs = redis.call('HGET', KEYS[4], member)
  local blobs = {}
  if refs then
    blobs = hmget_all(KEYS[5], cmsgpack.unpack(refs))
  end
  local write_fields = redis.call(
    'ZRANGEBYLEX', KEYS[7], '[' .. member .. '\0', '(' .. member .. '\1')
  local writes = hmget_all(KEYS[6], write_fields)
  return {member, record, meta, refs or false, blobs, writes}
end
"""

# ARGV: ttl, member, record, metadata, refs, then blob field/value pairs.
PUT = (
    _PRELUDE
    + r"""
local member = ARGV[2]
redis.call('ZADD', KEYS[1], 0, member)
redis.call('HSET', KEYS[2], member, ARGV[3])
redis.call('HSET', KEYS[3], member, ARGV[4])
redis.call('HSET', KEYS[4], member, ARGV[5])
local n = #ARGV
local i = 6
while i <= n do
  local j = math.min(i + 999, n)
  redis.call('HSET', KEYS[5], unpack(ARGV, i, j))
  i = j + 1
end
touch(tonumber(ARGV[1]))
return 1
"""
)

# ARGV: ttl, field prefix (member .. '\0'), then triples of
# (field suffix, value, '1' to overwrite or '0' to keep an existing value).
PUT_WRITES = (
    _PRELUDE
    + r"""
local prefix = ARGV[2]
for i = 3, #ARGV, 3 do
  local field = prefix .. ARGV[i]
  if ARGV[i + 2] == '1' then
    redis.call('HSET', KEYS[6], field, ARGV[i + 1])
  else
    redis.call('HSETNX', KEYS[6], field, ARGV[i + 1])
  end
  redis.call('ZADD', KEYS[7], 0, field)
end
touch(tonumber(ARGV[1]))
return 1
"""
)

# ARGV: ttl, namespace, checkpoint id ('' = latest in the namespace).
GET = (
    _PRELUDE
    + r"""
local ns = ARGV[2]
local member
if ARGV[3] == '' then
  local found = redis.call(
    'ZREVRANGEBYLEX', KEYS[1], '(' .. ns .. '\1', '(' .. ns .. '\0', 'LIMIT', 0, 1)
  member = found[1]
else
  member = ns .. '\0' .. ARGV[3]
end
touch(tonumber(ARGV[1]))
if not member then
  return false
end
return load(member)
"""
)

# ARGV: ttl, max bound, min bound, count, mode.
# Returns {members newest first, data}. In mode 'full' data contains load() of
# each member, in mode 'meta' its metadata, for filtering on the client.
LIST = (
    _PRELUDE
    + r"""
local members = redis.call(
  'ZREVRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for i = 1, #members do
  if ARGV[5] == 'full' then
    out[i] = load(members[i])
  else
    out[i] = redis.call('HGET', KEYS[3], members[i])
  end
end
touch(tonumber(ARGV[1]))
return {members, out}
"""
)

# ARGV: ttl, then members. Returns load() of each member, false where missing.
LOAD_MANY = (
    _PRELUDE
    + r"""
local out = {}
for i = 2, #ARGV do
  out[i - 1] = load(ARGV[i])
end
touch(tonumber(ARGV[1]))
return out
"""
)

# ARGV: ttl, keep_last (-1 = no limit, 0 deletes the thread), then members to
# drop regardless. Keeps the newest keep_last checkpoints of every namespace
# that are not listed, then drops every write and blob that no kept checkpoint
# references, so nothing is left orphaned.
PRUNE = (
    _PRELUDE
    + r"""
local keep_last = tonumber(ARGV[2])
local listed = {}
for i = 3, #ARGV do
  listed[ARGV[i]] = true
end
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local seen = {}
local kept = {}
for i = #members, 1, -1 do
  local m = members[i]
  local ns = string.match(m, '^([^%z]*)%z')
  if not listed[m] then
    seen[ns] = (seen[ns] or 0) + 1
  end
  if not listed[m] and (keep_last < 0 or seen[ns] <= keep_last) then
    kept[m] = true
  else
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], m)
    redis.call('HDEL', KEYS[3], m)
    redis.call('HDEL', KEYS[4], m)
  end
end
if next(kept) == nil then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7],
    KEYS[8])
  return 0
end
local live = {}
for m in pairs(kept) do
  local refs = redis.call('HGET', KEYS[4], m)
  if refs then
    for _, field in ipairs(cmsgpack.unpack(refs)) do
      live[field] = true
    end
  end
end
for _, field in ipairs(redis.call('HKEYS', KEYS[5])) do
  if not live[field] then
    redis.call('HDEL', KEYS[5], field)
  end
end
for _, field in ipairs(redis.call('ZRANGE', KEYS[7], 0, -1)) do
  local owner = string.match(field, '^([^%z]*%z[^%z]*)%z')
  if not kept[owner] then
    redis.call('ZREM', KEYS[7], field)
    redis.call('HDEL', KEYS[6], field)
  end
end
touch(tonumber(ARGV[1]))
local total = 0
for _ in pairs(kept) do
  total = total + 1
end
return total
"""
)

# ARGV: ttl (unused). Marks the thread as kept and removes every expiry.
PERSIST = r"""
redis.call('SET', KEYS[8], '1')
for i = 1, 7 do
  redis.call('PERSIST', KEYS[i])
end
return redis.call('EXISTS', KEYS[1])
"""
