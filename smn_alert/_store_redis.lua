-- The shared store's operations on Redis, one script each (see smn_alert/_store_redis.py).
--
-- Each script gets every key of one target in KEYS (one hash tag, one Cluster slot) and reads time only from
-- the server's TIME. The prelude (constants, key names, helpers, `now`) is put before each script; a line
-- "--- name" starts a script. Floats are stored and returned as text ('%.17g'): Lua would turn a returned
-- number into an integer and cjson would round it to 14 digits. The SQLite backend mirrors every rule here.

--- prelude
local WIN, COUNT, LEVEL, SAMPLE, FIRST, LAST, WHO, LEASES, PAYLOADS, BUDGET, HELD, CIRCUIT, LIVE, HOSTS =
  unpack(KEYS)

local function num(x)
  return string.format('%.17g', x)
end

local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local now = clock()

-- Let `key` live `seconds` more (at least a millisecond).
local function expire(key, seconds)
  redis.call('PEXPIRE', key, math.max(1, math.ceil(seconds * 1000)))
end

-- A hash as a Lua table.
local function map(key)
  local flat, result = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do
    result[flat[i]] = flat[i + 1]
  end
  return result
end

-- Open (or re-arm) the window: folding lasts until now + window; kept KEEP_WINDOWS windows (at least
-- MIN_KEEP seconds) past its end, and so are the counts added to it.
local function open_window(window, level, started)
  local keep = math.max(KEEP_WINDOWS * window, MIN_KEEP)
  redis.call('HSET', WIN, 'end', num(now + window), 'level', level, 'started', started, 'keep', num(keep))
  expire(WIN, window + keep)
end

-- Claimed digests live until their latest lease ends, plus PAYLOAD_KEEP for another process to send them.
local function keep_claims()
  local latest = redis.call('ZRANGE', LEASES, -1, -1, 'WITHSCORES')
  if latest[2] then
    local keep = tonumber(latest[2]) - now + PAYLOAD_KEEP
    expire(LEASES, keep)
    expire(PAYLOADS, keep)
  end
end

-- Forget processes whose heartbeat expired; keep the rest as long as the latest heartbeat.
local function prune_live()
  for _, process in ipairs(redis.call('ZRANGEBYSCORE', LIVE, '-inf', num(now))) do
    redis.call('ZREM', LIVE, process)
    redis.call('HDEL', HOSTS, process)
  end
  local latest = redis.call('ZRANGE', LIVE, -1, -1, 'WITHSCORES')
  if latest[2] then
    expire(LIVE, tonumber(latest[2]) - now)
    expire(HOSTS, tonumber(latest[2]) - now)
  end
end

-- How many fields a hash of process -> host has, and how many distinct hosts.
local function tally(key)
  local processes, hosts, seen = 0, 0, {}
  for _, host in pairs(map(key)) do
    processes = processes + 1
    if not seen[host] then
      seen[host], hosts = true, hosts + 1
    end
  end
  return processes, hosts
end

--- observe
-- ARGV: level, window. Returns 1 to page now, 0 to fold.
local level, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local w = redis.call('HMGET', WIN, 'end', 'level', 'started')
local ends = tonumber(w[1])
local quiet = not ends
  or (now >= ends and redis.call('EXISTS', COUNT) == 0 and redis.call('EXISTS', LEASES) == 0)
if not quiet and level <= tonumber(w[2]) then
  return 0
end
open_window(window, level, quiet and num(now) or w[3])
return 1

--- add
-- ARGV: process, host, ttl ('' for no heartbeat), n, then n times: kind, level, count, sample, first_seen,
-- last_seen.
local process, host, ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if ttl then
  redis.call('ZADD', LIVE, num(now + ttl), process)
  redis.call('HSET', HOSTS, process, host)
  prune_live()
end
for i = 0, n - 1 do
  local at = 5 + i * 6
  local kind, level = ARGV[at], tonumber(ARGV[at + 1])
  redis.call('HINCRBY', COUNT, kind, ARGV[at + 2])
  local old = tonumber(redis.call('HGET', LEVEL, kind))
  if not old or level > old then
    redis.call('HSET', LEVEL, kind, level)
  end
  if ARGV[at + 3] ~= '' then
    redis.call('HSETNX', SAMPLE, kind, ARGV[at + 3])
  end
  old = tonumber(redis.call('HGET', FIRST, kind))
  if not old or tonumber(ARGV[at + 4]) < old then
    redis.call('HSET', FIRST, kind, ARGV[at + 4])
  end
  old = tonumber(redis.call('HGET', LAST, kind))
  if not old or tonumber(ARGV[at + 5]) > old then
    redis.call('HSET', LAST, kind, ARGV[at + 5])
  end
end
redis.call('HSET', WHO, process, host)
local w = redis.call('HMGET', WIN, 'end', 'keep')
local keep = ORPHAN_KEEP
if w[1] then
  keep = math.max(tonumber(w[1]) - now, 0) + tonumber(w[2])
end
for _, key in ipairs({COUNT, LEVEL, SAMPLE, FIRST, LAST, WHO}) do
  expire(key, keep)
end
return 0

--- claim
-- ARGV: claim_id, window, lease, max_kinds, force (1: take an open window's counts too).
-- Returns {payload, reoffered} or nil.
local claim_id, window, lease, max_kinds = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local force = ARGV[5] == '1'

local function lease_out(payload)
  redis.call('ZADD', LEASES, num(now + lease), claim_id)
  redis.call('HSET', PAYLOADS, claim_id, payload)
  keep_claims()
end

-- Byte order (= code point order for UTF-8), as Python sorts str; Lua's < would use the locale.
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

-- Keep the max_kinds largest counts; merge the rest into one entry per level band (mirrors merge_kinds).
local function merge(kinds)
  table.sort(kinds, function(a, b)
    if a[3] ~= b[3] then
      return a[3] > b[3]
    end
    return before(a[1], b[1])
  end)
  local kept, bands = {}, {}
  for i, k in ipairs(kinds) do
    if i <= max_kinds then
      kept[#kept + 1] = k
    else
      local band = k[2] >= CRITICAL_BAND and 1 or 2
      local m = bands[band]
      if not m then
        bands[band] = {OTHER_KINDS, k[2], k[3], '', k[5], k[6], 1}
      else
        m[2], m[3], m[7] = math.max(m[2], k[2]), m[3] + k[3], m[7] + 1
        m[5], m[6] = math.min(m[5], k[5]), math.max(m[6], k[6])
      end
    end
  end
  for band = 1, 2 do
    if bands[band] then
      kept[#kept + 1] = bands[band]
    end
  end
  return kept
end

-- Read and reset the counts, contributors and held note in this one step.
local function take_counts(counts)
  local levels, samples, firsts, lasts = map(LEVEL), map(SAMPLE), map(FIRST), map(LAST)
  local kinds, top = {}, 0
  for kind, count in pairs(counts) do
    kinds[#kinds + 1] = {kind, tonumber(levels[kind]), tonumber(count), samples[kind] or '',
      tonumber(firsts[kind]), tonumber(lasts[kind]), 1}
  end
  kinds = merge(kinds)
  for _, k in ipairs(kinds) do
    top = math.max(top, k[2])
    k[5], k[6] = num(k[5]), num(k[6])
  end
  local processes, hosts = tally(WHO)
  local held = redis.call('GET', HELD)
  redis.call('DEL', COUNT, LEVEL, SAMPLE, FIRST, LAST, WHO, HELD)
  return {k = kinds, p = processes, h = hosts, held = held or nil}, top
end

-- (a) a claim whose lease expired unacknowledged goes to this caller first (at least once).
local oldest = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
if oldest[2] and tonumber(oldest[2]) <= now then
  local payload = redis.call('HGET', PAYLOADS, oldest[1])
  redis.call('ZREM', LEASES, oldest[1])
  redis.call('HDEL', PAYLOADS, oldest[1])
  if payload then
    lease_out(payload)
    return {payload, 1}
  end
end
-- (b) a window that ended: quiet when nothing was counted, else its digest.
local w = redis.call('HMGET', WIN, 'end', 'started')
local ended = not w[1] or now >= tonumber(w[1])
if not ended and not force then
  return nil
end
local counts = map(COUNT)
if next(counts) == nil then
  if w[1] and ended and redis.call('EXISTS', LEASES) == 0 then
    redis.call('DEL', WIN)
  end
  return nil
end
local data, top = take_counts(counts)
data.start = w[2] or num(now)
open_window(window, top, num(now))
local payload = cjson.encode(data)
lease_out(payload)
return {payload, 0}

--- renew
-- ARGV: claim_id, lease. Returns 1 when the lease was still this claim's.
if not redis.call('ZSCORE', LEASES, ARGV[1]) then
  return 0
end
redis.call('ZADD', LEASES, num(now + tonumber(ARGV[2])), ARGV[1])
keep_claims()
return 1

--- ack
-- ARGV: claim_id.
redis.call('ZREM', LEASES, ARGV[1])
redis.call('HDEL', PAYLOADS, ARGV[1])
return 0

--- spend
-- ARGV: cost, n, then n times: bucket name, capacity, period. GCRA, all buckets or none (mirrors gcra).
-- Returns '0' when spent, else the seconds to wait as text.
local cost, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait, arrivals = 0, {}
for i = 1, n do
  local at = 3 + (i - 1) * 3
  local capacity, period = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local tat = tonumber(redis.call('HGET', BUDGET, ARGV[at])) or now
  local ahead = math.max(tat - now, 0) + cost * period / capacity
  if ahead - period > EPSILON then
    wait = math.max(wait, ahead - period)
  end
  arrivals[i] = now + ahead
end
if wait > 0 then
  return num(wait)
end
local longest = 0
for i = 1, n do
  redis.call('HSET', BUDGET, ARGV[3 + (i - 1) * 3], num(arrivals[i]))
  longest = math.max(longest, arrivals[i] - now)
end
expire(BUDGET, longest)
return '0'

--- hold
redis.call('SET', HELD, num(now), 'NX', 'PX', math.ceil(HELD_KEEP * 1000))
return 0

--- open_circuit
-- ARGV: seconds, reason. A pause already open longer is kept.
local ends = now + tonumber(ARGV[1])
local old = tonumber(redis.call('HGET', CIRCUIT, 'until'))
if old and old >= ends then
  return 0
end
redis.call('HSET', CIRCUIT, 'until', num(ends), 'reason', ARGV[2])
expire(CIRCUIT, ends - now)
return 1

--- circuit
-- Returns {seconds left, reason} while open, else nil.
local c = redis.call('HMGET', CIRCUIT, 'until', 'reason')
if c[1] and tonumber(c[1]) > now then
  return {num(tonumber(c[1]) - now), c[2]}
end
return nil

--- close_circuit
redis.call('DEL', CIRCUIT)
return 0

--- heartbeat
-- ARGV: process, host, ttl.
redis.call('ZADD', LIVE, num(now + tonumber(ARGV[3])), ARGV[1])
redis.call('HSET', HOSTS, ARGV[1], ARGV[2])
prune_live()
return 0

--- leave
-- ARGV: process. Returns the live processes left.
redis.call('ZREM', LIVE, ARGV[1])
redis.call('HDEL', HOSTS, ARGV[1])
prune_live()
return redis.call('ZCARD', LIVE)

--- live
-- Returns {processes, hosts}.
prune_live()
local processes, hosts = tally(HOSTS)
return {processes, hosts}

--- status
-- Returns the raw fleet view as JSON (see status_view in smn_alert/_store.py).
prune_live()
local waiting, kinds = 0, 0
for _, count in ipairs(redis.call('HVALS', COUNT)) do
  waiting, kinds = waiting + tonumber(count), kinds + 1
end
local leases = {}
local flat = redis.call('ZRANGE', LEASES, 0, -1, 'WITHSCORES')
for i = 2, #flat, 2 do
  leases[#leases + 1] = flat[i]
end
local w = redis.call('HMGET', WIN, 'end', 'level', 'started')
local c = redis.call('HMGET', CIRCUIT, 'until', 'reason')
local processes, hosts = tally(HOSTS)
return cjson.encode({
  now = num(now),
  window = w[1] and {w[1], tonumber(w[2]), w[3]} or nil,
  counts = {kinds, waiting},
  leases = leases,
  held = redis.call('GET', HELD) or nil,
  budget = map(BUDGET),
  circuit = c[1] and {c[1], c[2]} or nil,
  live = {processes, hosts},
})
