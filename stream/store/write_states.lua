-- Compare-and-set model states. Called by WindowStore.write_states.
--
-- KEYS: 2 per distinct user: state (hash), meta (hash). ARGV[1] ttl_ms, ARGV[2] the writes,
-- concatenated records '>I4I8I4' (1-based user index, seq, blob length), then the blob.
-- A state replaces the stored one only when its seq is higher, so a late or replayed batch
-- never rolls a user's state back; a user without a live history (no meta) gets no state.
-- Returns 1 (written) or 0 (refused) per write.
local ttl_ms = tonumber(ARGV[1])
local records = ARGV[2]
local RECORD = '>I4I8I4'
local out = {}
local pos = 1
while pos <= #records do
  local index, seq, blob_len, at = struct.unpack(RECORD, records, pos)
  local blob = string.sub(records, at, at + blob_len - 1)
  pos = at + blob_len
  local k_state, k_meta = KEYS[2 * index - 1], KEYS[2 * index]
  local written = 0
  if redis.call('EXISTS', k_meta) == 1 then
    local stored = redis.call('HGET', k_state, 'seq')
    if not stored or tonumber(stored) < seq then
      redis.call('HSET', k_state, 'seq', string.format('%d', seq), 'blob', blob)
      redis.call('PEXPIRE', k_state, ttl_ms)
      written = 1
    end
  end
  out[#out + 1] = written
end
return out
