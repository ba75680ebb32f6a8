-- Write held users' changes behind. Called by RedisBacking.write_behind, once per Cluster slot
-- group, after each batch and before its offsets are committed. docs/redis-layout.md.
-- No window contents are read: the client sends the new entries and the length to keep.
--
-- KEYS: 3 per user: window (list), meta (hash), state (hash). (The v1 ids hash is deleted by
-- load_users.lua; each key costs the client an argument per user and batch.)
-- ARGV[1] ttl_ms, ARGV[2] the users' records, concatenated: '>I4I8I1I4I8i8I4I8I4' (1-based user
-- index, fence epoch, flags (1: rewrite the window, 2: write the state, 4: renew the TTLs, 8:
-- trim the window to the entries to keep), entries to keep, seq, max_ts, number of new entries,
-- state seq, state length), then per new entry '>I4' + the entry, then the state blob.
-- The client asks for trimming only when its window dropped entries, and for the TTLs only when
-- a key is new or the last renewal is older than 1/64 of the TTL (docs/redis-layout.md): each
-- call costs Redis more than the rest of a user's write.
-- Returns per user 1 (written), 0 (the user's meta is gone: expired or erased since its load;
-- nothing written), -1 (fenced: a higher epoch claimed the user; nothing written) or 2 (the
-- window key had been overwritten by another type: every key of the user deleted).
local ttl_ms = tonumber(ARGV[1])
local records = ARGV[2]
local HEAD = '>I4I8I1I4I8i8I4I8I4'
local CHUNK = 1000  -- unpack() arguments per RPUSH (Lua's C stack is limited)

local function failed(reply)  -- a redis.pcall error reply (WRONGTYPE: the key was overwritten)
  return type(reply) == 'table' and reply.err ~= nil
end

local out = {}
local pos = 1
while pos <= #records do
  local index, epoch, flags, keep, seq, max_ts, n, state_seq, state_len, at =
    struct.unpack(HEAD, records, pos)
  local entries = {}
  for j = 1, n do
    local len, from = struct.unpack('>I4', records, at)
    entries[j] = string.sub(records, from, from + len - 1)
    at = from + len
  end
  local blob = string.sub(records, at, at + state_len - 1)
  pos = at + state_len
  local base = 3 * (index - 1)
  local w, m, s = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3]
  local fence = redis.pcall('HGET', m, 'fence')
  local outcome = 1
  if type(fence) ~= 'string' or not tonumber(fence) then
    outcome = 0
  elseif tonumber(fence) > epoch then
    outcome = -1
  else
    if bit.band(flags, 1) ~= 0 then redis.call('DEL', w) end
    local window_ok = true
    for from = 1, n, CHUNK do
      if failed(redis.pcall('RPUSH', w, unpack(entries, from, math.min(from + CHUNK - 1, n)))) then
        window_ok = false
        break
      end
    end
    if window_ok and bit.band(flags, 8) ~= 0 and failed(redis.pcall('LTRIM', w, -keep, -1)) then
      window_ok = false
    end
    if not window_ok then
      -- Something else overwrote the window since the load: the history is lost; the client
      -- drops the user and its next load starts a fresh one.
      redis.call('DEL', w, m, s)
      outcome = 2
    else
      redis.call('HSET', m, 'seq', string.format('%d', seq), 'max_ts', string.format('%d', max_ts))
      if bit.band(flags, 2) ~= 0 then
        local state = { 'seq', string.format('%d', state_seq), 'blob', blob }
        if failed(redis.pcall('HSET', s, unpack(state))) then  -- overwritten by another type
          redis.call('DEL', s)
          redis.call('HSET', s, unpack(state))
        end
      end
      if bit.band(flags, 4) ~= 0 then
        redis.call('PEXPIRE', w, ttl_ms)
        redis.call('PEXPIRE', m, ttl_ms)
        redis.call('PEXPIRE', s, ttl_ms)
      end
    end
  end
  out[#out + 1] = outcome
end
return out
