-- Append a batch of events to per-user windows, idempotently per event_id.
-- Layout, entry encoding and rules: docs/redis-layout.md. Called by WindowStore.append_batch.
--
-- KEYS: 4 per distinct user of the batch: window (list), ids (hash), meta (hash), state (hash).
-- ARGV[1] window_size, ARGV[2] max_age_ms, ARGV[3] ttl_ms, ARGV[4] the events, concatenated
-- records in batch order: '>I4i8I2I4' (1-based user index, ts_ms, id length, row length), then
-- the event_id and the row. (One packed argument, not 3 per event: argument encoding dominated
-- the client's cost.) ARGV[5] (optional): '>I8' per user, in user index order: the state seq
-- the client already holds for that user (0 = none).
-- Returns 6 values per event: applied (1/0), seq, window_len, prev_ts_ms|nil, state_seq|nil,
-- state|nil. The state blob (~1.8 KB) is sent at a user's FIRST event of the batch only (nil at
-- the others: the client repeats the first one), and not at all when its seq is the one the
-- client holds (ARGV[5]).
-- Per new event: HSETNX (dedup + id), RPUSH, and LPOP + HDEL + LINDEX once the window is full.
-- Stored values are untrusted (docs/reliability.md): a malformed entry is skipped, and a key of
-- the wrong type is deleted before anything of its user is written (the window, ids and meta
-- only make sense together: all four keys go; a wrong-typed state goes alone). Then one more
-- value follows the 6 per event: a flat list of (user index, 'window'|'state') repairs.
local window_size = tonumber(ARGV[1])
local max_age_ms = tonumber(ARGV[2])
local ttl_ms = tonumber(ARGV[3])
local records = ARGV[4]
local held = ARGV[5] or ''
local ENTRY = '>I8i8I2'  -- seq u64, ts i64, event_id length u16 (18 bytes), then id and row
local ENTRY_LEN = 18
local RECORD = '>I4i8I2I4'

local function entry_ts(entry)  -- false for a malformed entry
  if #entry < ENTRY_LEN then return false end
  local _, ts = struct.unpack(ENTRY, entry)
  return ts
end

local function failed(reply)  -- a redis.pcall error reply (WRONGTYPE)
  return type(reply) == 'table' and reply.err ~= nil
end

local repairs = {}

local function entry_eid(entry)  -- '' for a malformed entry
  if #entry < ENTRY_LEN then return '' end
  local _, _, id_len = struct.unpack(ENTRY, entry)
  return string.sub(entry, ENTRY_LEN + 1, ENTRY_LEN + id_len)
end

-- What the batch has learnt about each user, read once at the user's first event.
local users = {}
local function user_at(index)
  local user = users[index]
  if user then return user end
  local base = 4 * (index - 1)
  user = { w = KEYS[base + 1], ids = KEYS[base + 2], m = KEYS[base + 3], s = KEYS[base + 4] }
  local meta = redis.pcall('HMGET', user.m, 'seq', 'max_ts')
  local len = redis.pcall('LLEN', user.w)
  if failed(meta) or failed(len) or (meta[1] and not tonumber(meta[1]))
      or failed(redis.pcall('HLEN', user.ids)) then
    redis.call('DEL', user.w, user.ids, user.m, user.s)
    repairs[#repairs + 1] = index
    repairs[#repairs + 1] = 'window'
    meta, len = { false, false }, 0
  end
  user.seq = tonumber(meta[1]) or 0
  user.max_ts = tonumber(meta[2])
  user.state_seq, user.state = false, false
  if not meta[1] then
    -- A fresh history (new user, or everything expired): a state left from an earlier history
    -- would carry a higher seq than the new events and block every new state.
    redis.call('DEL', user.s)
  else
    local state_seq = redis.pcall('HGET', user.s, 'seq')
    if failed(state_seq) then
      redis.call('DEL', user.s)
      repairs[#repairs + 1] = index
      repairs[#repairs + 1] = 'state'
      state_seq = false
    end
    user.state_seq = state_seq and tonumber(state_seq) or false
    local holds = #held >= 8 * index and struct.unpack('>I8', held, 8 * index - 7) == user.state_seq
    if user.state_seq and not holds then  -- else the client has this very state: not sent
      user.state = redis.call('HGET', user.s, 'blob') or false
    end
  end
  user.len = len
  local tail = redis.call('LINDEX', user.w, -1)
  user.tail_ts = tail and entry_ts(tail) or false
  user.dirty = false
  users[index] = user
  return user
end

local out = {}
local pos = 1
while pos <= #records do
  local index, ts, id_len, row_len, at = struct.unpack(RECORD, records, pos)
  local event_id = string.sub(records, at, at + id_len - 1)
  local row = string.sub(records, at + id_len, at + id_len + row_len - 1)
  pos = at + id_len + row_len
  local user = user_at(index)

  -- HSETNX records the id of a new event and detects a replay in one call.
  local new_seq = user.seq + 1
  local applied, seq, prev_ts
  if redis.call('HSETNX', user.ids, event_id, string.format('%d', new_seq)) == 0 then
    local known_seq = redis.call('HGET', user.ids, event_id)
    -- A replay: change nothing, report the event as it stands in the window.
    applied, seq, prev_ts = 0, tonumber(known_seq), false
    for _, entry in ipairs(redis.call('LRANGE', user.w, 0, -1)) do
      if #entry >= ENTRY_LEN then
        local entry_seq, entry_ts_ms = struct.unpack(ENTRY, entry)
        if entry_seq == seq then break end
        prev_ts = entry_ts_ms
      end
    end
  else
    applied, seq, prev_ts = 1, new_seq, user.tail_ts
    user.seq = seq
    user.max_ts = math.max(user.max_ts or ts, ts)
    local len = redis.call('RPUSH', user.w, struct.pack(ENTRY, seq, ts, id_len) .. event_id .. row)
    -- Trim by count, then by age from the oldest end; forget the ids of what leaves.
    while len > window_size do
      redis.call('HDEL', user.ids, entry_eid(redis.call('LPOP', user.w)))
      len = len - 1
    end
    local cutoff = user.max_ts - max_age_ms
    while len > 1 do
      local head = redis.call('LINDEX', user.w, 0)
      local head_ts = entry_ts(head)
      if head_ts and head_ts >= cutoff then break end  -- a malformed head goes too
      redis.call('LPOP', user.w)
      redis.call('HDEL', user.ids, entry_eid(head))
      len = len - 1
    end
    user.len, user.tail_ts, user.dirty = len, ts, true
  end
  out[#out + 1] = applied
  out[#out + 1] = seq
  out[#out + 1] = user.len
  out[#out + 1] = prev_ts
  out[#out + 1] = user.state_seq
  out[#out + 1] = user.state
  user.state = false  -- sent once per user and batch
end

-- Once per changed user: the meta counters and the TTL of every key.
for _, user in pairs(users) do
  if user.dirty then
    redis.call('HSET', user.m, 'seq', string.format('%d', user.seq),
      'max_ts', string.format('%d', user.max_ts))
    redis.call('PEXPIRE', user.w, ttl_ms)
    redis.call('PEXPIRE', user.ids, ttl_ms)
    redis.call('PEXPIRE', user.m, ttl_ms)
    redis.call('PEXPIRE', user.s, ttl_ms)
  end
end
if #repairs > 0 then out[#out + 1] = repairs end
return out
