"""The Lua scripts of `RedisStore`: each call of one is one atomic step of shared state.

Redis runs a script to completion before any other command, so a step that reads and writes
(admit a probe, record an outcome, take tokens) cannot interleave with another process's.
Every script reads the time from the server (`TIME`), so the processes' clocks may disagree,
refreshes the TTL of the keys it touches, and returns floats as strings (Redis would
truncate Lua numbers to integers). Each keeps the settings it was first run with beside
its state and refuses a step made with other settings (it answers {'config', stored}), so
replicas configured differently get an error instead of applying each their own.

The breaker script follows `_core/breaker.py` rule for rule: the same states, generations
and probe tickets, the same windows (a count window is a ring of one byte per call in a
string; a time window ten buckets in a hash). Its tests run the same scenarios against both.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BREAKER", "BUDGET", "LIMITER"]

BREAKER: Final = r"""
local state_key, ring_key, probes_key = KEYS[1], KEYS[2], KEYS[3]
local op, ticket = ARGV[1], tonumber(ARGV[2])
local failed, slow = ARGV[3] == '1', ARGV[4] == '1'
local pending, cfg = ARGV[5], ARGV[6]
local wtype, wsize = ARGV[7], tonumber(ARGV[8])
local frate, min_calls = tonumber(ARGV[9]), tonumber(ARGV[10])
local open_for, half = tonumber(ARGV[11]), tonumber(ARGV[12])
local srate, ptimeout = tonumber(ARGV[13]), tonumber(ARGV[14])
local ttl_ms = tonumber(ARGV[15])
local BUCKETS = 10

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local s = {}
local flat = redis.call('HGETALL', state_key)
for i = 1, #flat, 2 do s[flat[i]] = flat[i + 1] end
if s.cfg == nil then
  s = {state = 'closed', serial = '0', gen = '0', opened = '0', psucc = '0', pslow = '0',
       total = '0', failures = '0', slow = '0'}
  if op ~= 'peek' then redis.call('DEL', ring_key, probes_key) end
elseif s.cfg ~= cfg then
  return {'config', s.cfg}
end
local st = s.state
local serial, gen, opened = tonumber(s.serial), tonumber(s.gen), tonumber(s.opened)
local psucc, pslow = tonumber(s.psucc), tonumber(s.pslow)
local total, wfail, wslow = tonumber(s.total), tonumber(s.failures), tonumber(s.slow)
local transitions = {}
if wtype == 'count' then min_calls = math.min(min_calls, wsize) end
if min_calls < 1 then min_calls = 1 end
local width = wsize / BUCKETS

local function totals()
  if wtype == 'count' then return math.min(total, wsize), wfail, wslow end
  local epoch = math.floor(now / width)
  local b = {}
  local raw = redis.call('HGETALL', ring_key)
  for i = 1, #raw, 2 do b[raw[i]] = tonumber(raw[i + 1]) end
  local c, f, sl = 0, 0, 0
  for i = 0, BUCKETS - 1 do
    local e = b['e' .. i]
    if e and e > epoch - BUCKETS and e <= epoch then
      c = c + b['c' .. i]; f = f + b['f' .. i]; sl = sl + b['s' .. i]
    end
  end
  return c, f, sl
end

local function record(fv, sv)
  if wtype == 'count' then
    local idx = total % wsize
    if total >= wsize then
      local old = redis.call('GETRANGE', ring_key, idx, idx)
      local byte = 0
      if old ~= '' then byte = string.byte(old) end
      wfail = wfail - byte % 2
      wslow = wslow - math.floor(byte / 2)
    end
    redis.call('SETRANGE', ring_key, idx, string.char(fv + 2 * sv))
    total, wfail, wslow = total + 1, wfail + fv, wslow + sv
    return
  end
  local epoch = math.floor(now / width)
  local i = epoch % BUCKETS
  local e = tonumber(redis.call('HGET', ring_key, 'e' .. i))
  if e ~= epoch then
    redis.call('HSET', ring_key, 'e' .. i, epoch, 'c' .. i, 1, 'f' .. i, fv, 's' .. i, sv)
  else
    redis.call('HINCRBY', ring_key, 'c' .. i, 1)
    if fv == 1 then redis.call('HINCRBY', ring_key, 'f' .. i, 1) end
    if sv == 1 then redis.call('HINCRBY', ring_key, 's' .. i, 1) end
  end
end

local function clear()
  total, wfail, wslow = 0, 0, 0
  redis.call('DEL', ring_key)
end

local function to(new)
  local old = st
  st = new
  redis.call('DEL', probes_key)
  psucc, pslow = 0, 0
  serial = serial + 1
  gen = serial
  if old ~= new then
    transitions[#transitions + 1] = old
    transitions[#transitions + 1] = new
  end
end

local function oldest_probe()
  local oldest = nil
  for _, v in ipairs(redis.call('HVALS', probes_key)) do
    local x = tonumber(v)
    if oldest == nil or x < oldest then oldest = x end
  end
  return oldest
end

local function advance()
  while true do
    if st == 'open' then
      if now < opened + open_for then return end
      to('half_open')
    elseif st == 'half_open' then
      local oldest = oldest_probe()
      if oldest == nil or now <= oldest + ptimeout then return end
      opened = oldest + ptimeout
      to('open')
    else
      return
    end
  end
end

local function view()
  local ready
  if st == 'open' then
    ready = opened + open_for
  elseif st == 'half_open' then
    local oldest = oldest_probe()
    if oldest == nil then return st, 0, nil end
    local expiry = oldest + ptimeout
    ready = expiry + open_for
    if now <= expiry then
      local n = redis.call('HLEN', probes_key)
      if n + psucc >= half then return st, n, math.max(0, ready - now) end
      return st, n, nil
    end
  else
    return st, 0, nil
  end
  if now >= ready then return 'half_open', 0, nil end
  return 'open', 0, ready - now
end

local function check()
  if st ~= 'closed' then return end
  local calls, f, sl = totals()
  if calls < min_calls then return end
  if f / calls >= frate or sl / calls >= srate then
    opened = now
    to('open')
  end
end

local function fast()
  if st == 'closed' or st == 'disabled' then return gen end
  return -1
end

local function probe_done(fv, sv)
  if redis.call('HEXISTS', probes_key, ticket) == 0 then return end
  local before = #transitions
  advance()
  if #transitions > before then return end
  redis.call('HDEL', probes_key, ticket)
  if fv == 1 then
    opened = now
    to('open')
    return
  end
  psucc = psucc + 1
  pslow = pslow + sv
  if psucc < half then return end
  if pslow / half >= srate then
    opened = now
    to('open')
    return
  end
  clear()
  to('closed')
end

if pending == 'force_open' then
  advance()
  if st ~= 'forced_open' then to('forced_open') end
elseif pending == 'disable' then
  advance()
  if st ~= 'disabled' then to('disabled') end
elseif pending == 'reset' then
  advance()
  clear()
  to('closed')
end

local result = -1
local fv, sv = 0, 0
if failed then fv = 1 end
if slow then sv = 1 end
if op == 'acquire' then
  if not ((st == 'open' and now < opened + open_for) or st == 'forced_open') then
    advance()
    if st == 'half_open' then
      if redis.call('HLEN', probes_key) + psucc < half then
        serial = serial + 1
        result = serial
        redis.call('HSET', probes_key, result, string.format('%.6f', now))
      end
    elseif st == 'closed' or st == 'disabled' then
      result = gen
    end
  end
elseif op == 'record' then
  if ticket == fast() then
    record(fv, sv)
    if fv == 1 or wfail > 0 or wslow > 0 or wtype == 'time' then check() end
  else
    probe_done(fv, sv)
  end
elseif op == 'cancel' then
  if redis.call('HEXISTS', probes_key, ticket) == 1 then
    advance()
    redis.call('HDEL', probes_key, ticket)
  end
end

if op ~= 'peek' then
  redis.call('HSET', state_key, 'cfg', cfg, 'state', st, 'serial', serial, 'gen', gen,
    'opened', string.format('%.6f', opened), 'psucc', psucc, 'pslow', pslow,
    'total', total, 'failures', wfail, 'slow', wslow)
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl_ms) end
end
local shown, in_flight, retry_after = view()
local calls, f, sl = totals()
local ra = ''
if retry_after ~= nil then ra = string.format('%.6f', retry_after) end
local reply = {result, shown, ra, fast(), calls, f, sl, in_flight}
for _, x in ipairs(transitions) do reply[#reply + 1] = x end
return reply
"""
"""One step of a shared breaker: an optional manual command, then `acquire`, `record`,
`cancel` or `peek`. Returns {ticket or -1, state, retry_after or '', fast ticket or -1,
calls, failures, slow calls, probes in flight, old1, new1, old2, new2, ...}, or
{'config', stored} when the stored breaker has other settings."""

LIMITER: Final = r"""
local key = KEYS[1]
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local op, ttl_ms, cfg = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local stored = redis.call('HGET', key, 'cfg')
if stored and stored ~= cfg then return {'config', stored} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', key, 'level', 'updated')
local level, updated = tonumber(v[1]), tonumber(v[2])
if level == nil or updated == nil then level, updated = burst, now end
if now > updated then
  level = math.min(burst, level + (now - updated) * rate)
  updated = now
end
local granted, wait = 1, 0
if op == 'give' then
  level = math.min(burst, level + tokens)
else
  local missing = tokens - level
  if missing > 1e-9 then wait = missing / rate end
  if limit >= 0 and wait > limit then
    granted = 0
  else
    level = level - tokens
  end
end
redis.call('HSET', key, 'level', string.format('%.9f', level),
  'updated', string.format('%.6f', updated), 'cfg', cfg)
redis.call('PEXPIRE', key, ttl_ms)
return {granted, string.format('%.9f', wait)}
"""
"""One step of a shared token bucket: `take` (at once, reserved with a wait of at most
`limit` seconds, or refused; a negative limit means none) or `give` back. Returns
{granted (1/0), wait}, or {'config', stored} when the stored bucket has other settings."""

BUDGET: Final = r"""
local key = KEYS[1]
local calls, withdraw = tonumber(ARGV[1]), ARGV[2] == '1'
local ratio, floor, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local buckets, ttl_ms, cfg = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local stored = redis.call('HGET', key, 'cfg')
if stored and stored ~= cfg then return {'config', stored} end
if not stored then redis.call('HSET', key, 'cfg', cfg) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local width = ttl / buckets
local epoch = math.floor(now / width)
local size = buckets + 1
local b = {}
local raw = redis.call('HGETALL', key)
for i = 1, #raw, 2 do b[raw[i]] = tonumber(raw[i + 1]) end
local i = epoch % size
if b['e' .. i] ~= epoch then
  b['e' .. i], b['c' .. i], b['r' .. i] = epoch, 0, 0
  redis.call('HSET', key, 'e' .. i, epoch, 'c' .. i, 0, 'r' .. i, 0)
end
if calls > 0 then
  b['c' .. i] = b['c' .. i] + calls
  redis.call('HINCRBY', key, 'c' .. i, calls)
end
local total_calls, total_retries = 0, 0
for j = 0, size - 1 do
  local e = b['e' .. j]
  if e and e > epoch - size and e <= epoch then
    total_calls = total_calls + b['c' .. j]
    total_retries = total_retries + b['r' .. j]
  end
end
local granted = 0
if withdraw and total_retries + 1 <= ratio * total_calls + floor then
  granted = 1
  total_retries = total_retries + 1
  redis.call('HINCRBY', key, 'r' .. i, 1)
end
redis.call('PEXPIRE', key, ttl_ms)
local available = math.max(0, ratio * total_calls + floor - total_retries)
return {granted, string.format('%.6f', available)}
"""
"""One step of a shared retry budget: add `calls` first attempts (deposits batched by the
process), then, if asked, withdraw one retry when the budget allows it. Counts live in
`buckets + 1` buckets of `ttl / buckets` seconds, as in `_core/budget.py`. Returns
{granted (1/0), retries available after the step}, or {'config', stored} when the stored
budget has other settings."""
