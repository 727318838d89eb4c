-- The Redis side of policy "redis": one script per request, run atomically by the server, that
-- checks every configured period and counts the request in all of them only when none would go
-- over its limit. Concurrent requests, from any worker of any node, are serialised by Redis, so
-- the limits can never be overshot.
--
-- KEYS: per period, the current window's counter, then (stride 2, sliding window) the previous
--       window's counter.
-- ARGV[1]: the stride (1: fixed window, 2: sliding window); then per period i: ARGV[3i-1] the
--       limit, ARGV[3i] the previous window's weight in millionths (0 for a fixed window),
--       ARGV[3i+1] the counter's lifetime in seconds.
-- Returns { allowed (1 or 0), cur_1, prev_1, cur_2, prev_2, ... }: each period's current count
-- (this request included when allowed) and its previous window's count (0 for a fixed window).
return [[
local s = tonumber(ARGV[1])
local n = #KEYS / s
local v = redis.call('MGET', unpack(KEYS))
local out = { 1 }
local ok = 1
for i = 1, n do
  local cur = tonumber(v[(i - 1) * s + 1]) or 0
  local prev = 0
  if s == 2 then prev = tonumber(v[2 * i]) or 0 end
  out[2 * i] = cur
  out[2 * i + 1] = prev
  if cur + 1 + prev * tonumber(ARGV[3 * i]) / 1000000 > tonumber(ARGV[3 * i - 1]) then ok = 0 end
end
if ok == 1 then
  for i = 1, n do
    local k = KEYS[(i - 1) * s + 1]
    local c = redis.call('INCR', k)
    if c == 1 then redis.call('EXPIRE', k, ARGV[3 * i + 1]) end
    out[2 * i] = c
  end
end
out[1] = ok
return out
]]
