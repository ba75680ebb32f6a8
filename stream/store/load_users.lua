-- Load and claim users for the held-users store. Called by RedisBacking.load_users, once per
-- Cluster slot group (all keys of a user share its {user} hash tag). docs/redis-layout.md.
--
-- KEYS: 4 per user: window (list), ids (hash, the v1 dedup index: no longer kept, deleted here),
-- meta (hash), state (hash). ARGV[1] the claiming worker's fence epoch, ARGV[2] ttl_ms.
-- The claim: meta's 'fence' field becomes the epoch unless a higher one is stored; then the user
-- is this worker's until a newer owner claims it, and write_behind.lua refuses older epochs.
-- Returns per user {-1} when a higher fence is stored (nothing read or changed), else
-- {1, seq|nil, max_ts|nil, state_seq|nil, state|nil, pttl, repaired|nil, ids_exists, entries}.
-- Stored values are untrusted (docs/reliability.md): a key of the wrong type is deleted (the
-- window, ids and meta only make sense together: all four go; a wrong-typed state goes alone).
local epoch = tonumber(ARGV[1])
local ttl_ms = tonumber(ARGV[2])

local function failed(reply)  -- a redis.pcall error reply (WRONGTYPE)
  return type(reply) == 'table' and reply.err ~= nil
end

local out = {}
for i = 1, #KEYS, 4 do
  local w, ids, m, s = KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3]
  local repaired = false
  local meta = redis.pcall('HMGET', m, 'seq', 'max_ts', 'fence')
  local entries = redis.pcall('LRANGE', w, 0, -1)
  if failed(meta) or failed(entries) or (meta[1] and not tonumber(meta[1]))
      or (meta[3] and not tonumber(meta[3])) then
    redis.call('DEL', w, ids, m, s)
    repaired = 'window'
    meta, entries = { false, false, false }, {}
  end
  if meta[3] and tonumber(meta[3]) > epoch then
    out[#out + 1] = { -1 }
  else
    if not meta[1] then
      -- A fresh history (new user, or everything expired): nothing of an earlier one survives,
      -- and the claim creates the meta hash that later writes require.
      redis.call('DEL', w, ids, s)
      entries = {}
    end
    local ids_exists = redis.call('EXISTS', ids)
    if ids_exists == 1 then redis.call('DEL', ids) end
    redis.call('HSET', m, 'fence', string.format('%d', epoch))
    if redis.call('PTTL', m) < 0 then redis.call('PEXPIRE', m, ttl_ms) end
    local state = redis.pcall('HMGET', s, 'seq', 'blob')
    if failed(state) then
      redis.call('DEL', s)
      if not repaired then repaired = 'state' end
      state = { false, false }
    end
    local state_seq = state[1] and tonumber(state[1]) or false
    out[#out + 1] = { 1, meta[1], meta[2], state_seq and state[1], state_seq and state[2],
      redis.call('PTTL', m), repaired, ids_exists, entries }
  end
end
return out
