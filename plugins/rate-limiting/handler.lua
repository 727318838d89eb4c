-- rate-limiting: Kong's rate-limiting plugin on the Weir PDK.
--
-- Each request is counted, per identifier (consumer, credential, IP, service, header value or
-- path), in a window of every configured period (second ... year). A request that would take any
-- period over its limit is refused (error_code, {"message": error_message}) and counted nowhere.
--
-- Counters: policy "local" keeps them in the weir_rate_limiting shared dictionary, so every
-- worker of the node counts against one limit; policy "redis" runs one atomic script per request
-- (script.lua) that checks and counts all periods together, so nodes sharing a Redis can never
-- overshoot. "sliding-window" (the default) adds the previous window's count weighted by how much
-- of it the last period still covers; "fixed-window" counts calendar windows as Kong does.
--
-- When the counters cannot be reached: with fault_tolerant the request passes uncounted, a
-- warning is logged at most once a second per worker, and Redis is skipped for a back-off (1 s,
-- doubling to 8 s while it keeps failing) so that later requests do not wait for a timeout;
-- without fault_tolerant the answer is 503.
--
-- Everything derived from a config is computed once per config table (a weak cache), window
-- boundaries once per second per worker; a request costs a few string concatenations for the
-- keys and one dictionary round or one Redis round trip.

-- Loaded on first use: only the redis policy needs it.
local SCRIPT

local RateLimiting = {
  PRIORITY = 910, -- after authentication (key-auth 1250, jwt 1450), so consumers are known
  VERSION = "1.0.0",
}

local floor, ceil = math.floor, math.ceil
local type, tostring, setmetatable, ipairs = type, tostring, setmetatable, ipairs
local format, concat = string.format, table.concat

local PERIODS = { "second", "minute", "hour", "day", "month", "year" }
local TAGS = { "s", "m", "h", "d", "mo", "y" }
-- the longest window of each period, in seconds (months and years follow the calendar)
local LONGEST = { 1, 60, 3600, 86400, 31 * 86400, 366 * 86400 }
local HDR_LIMIT, HDR_REMAINING = {}, {}
for i, p in ipairs(PERIODS) do
  local name = p:sub(1, 1):upper() .. p:sub(2)
  HDR_LIMIT[i] = "X-RateLimit-Limit-" .. name
  HDR_REMAINING[i] = "X-RateLimit-Remaining-" .. name
end

-- Header values as strings: a number handed to set_header is formatted and interned anew on
-- every call, a measurable cost per request; counts below NUMSTR_MAX are formatted once per
-- worker (at most NUMSTR_MAX short strings).
local NUMSTR_MAX = 16384
local numstrs = {}
local last_num, last_str
local function numstr(v)
  if v >= 0 and v < NUMSTR_MAX and v == floor(v) then
    local s = numstrs[v]
    if not s then
      s = format("%d", v)
      numstrs[v] = s
    end
    return s
  end
  -- larger ones: the last one is kept, since a request's remaining count goes out twice
  -- (X-RateLimit-Remaining-<Period> and RateLimit-Remaining)
  if v == last_num then return last_str end
  local s
  if v == floor(v) and v > -1e15 and v < 1e15 then s = format("%d", v) else s = tostring(v) end
  last_num, last_str = v, s
  return s
end

local BACKOFF_FIRST_MS, BACKOFF_MAX_MS = 1000, 8000
local MAX_IDENTIFIER = 128 -- longer identifiers (header values) are counted by their SHA-256

-- ---------------------------------------------------------------------------------------------
-- Windows (UTC), recomputed once per second

-- Days since 1970-01-01 of a civil date, and back (Howard Hinnant's algorithms).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

local win_second = -1
local win_start, win_end = {}, {}       -- the current window of each period
local cur_suffix, prev_suffix = {}, {}  -- ":m:<start>" of the current and previous windows

local function refresh_windows(sec)
  win_second = sec
  local prev = {}
  for i = 1, 4 do
    local len = LONGEST[i]
    local s = sec - sec % len
    win_start[i], win_end[i], prev[i] = s, s + len, s - len
  end
  local y, m = civil_from_days(floor(sec / 86400))
  win_start[5] = days_from_civil(y, m, 1) * 86400
  win_end[5] = (m == 12 and days_from_civil(y + 1, 1, 1) or days_from_civil(y, m + 1, 1)) * 86400
  prev[5] = (m == 1 and days_from_civil(y - 1, 12, 1) or days_from_civil(y, m - 1, 1)) * 86400
  win_start[6] = days_from_civil(y, 1, 1) * 86400
  win_end[6] = days_from_civil(y + 1, 1, 1) * 86400
  prev[6] = days_from_civil(y - 1, 1, 1) * 86400
  for i = 1, 6 do
    cur_suffix[i] = format(":%s:%d", TAGS[i], win_start[i])
    prev_suffix[i] = format(":%s:%d", TAGS[i], prev[i])
  end
end

-- ---------------------------------------------------------------------------------------------
-- Per-config state

local function present(v) return type(v) == "string" and v ~= "" and v or nil end

-- The counters' namespace: the plugin instance's id (stable across workers, nodes and reloads:
-- derived from the plugin's name and scope), as Kong keys counters by the instance's route and
-- service. Two instances never share counts; a changed limit keeps the counts so far.
local function namespace()
  return "weir:rl:" .. weir.plugin.get_id() .. ":"
end

local states = setmetatable({}, { __mode = "k" })

local function prepare(conf)
  local sliding = conf.algorithm ~= "fixed-window"
  local c = {
    idx = {}, limit = {}, limit_str = {}, ttl = {},
    cur = {}, prev = {}, weight = {}, keys = {}, -- scratch: filled and read between waits
    sliding = sliding,
    prefix = namespace(),
    limit_by = conf.limit_by,
    header_name = present(conf.header_name),
    path = present(conf.path),
    fault_tolerant = conf.fault_tolerant,
    hide = conf.hide_client_headers,
    error_code = conf.error_code,
    error_body = { message = conf.error_message },
  }
  local n = 0
  for i = 1, 6 do
    local limit = conf[PERIODS[i]]
    if type(limit) == "number" then
      n = n + 1
      c.idx[n], c.limit[n] = i, limit
      c.limit_str[n] = numstr(limit)
      c.ttl[n] = (sliding and 2 or 1) * LONGEST[i] + 1
    end
  end
  c.n = n
  if conf.policy == "redis" then
    SCRIPT = SCRIPT or require "plugins.rate-limiting.script"
    local r = conf.redis or {}
    -- Kong 3.5's flat redis_* fields, when given, stand for the nested ones (which have defaults)
    local function pick(field, short, want)
      local v = conf[short]
      if type(v) ~= want then v = r[field] end
      if type(v) ~= want then return nil end
      return v
    end
    local host = pick("host", "redis_host", "string")
    local port = pick("port", "redis_port", "number") or 6379
    local db = pick("database", "redis_database", "number") or 0
    local timeout = pick("timeout", "redis_timeout", "number") or 2000
    local password = pick("password", "redis_password", "string")
    if password == "" then password = nil end
    local username = pick("username", "redis_username", "string")
    c.redis = weir.redis.connect{ host = host, port = port, db = db, timeout = timeout,
                                  username = username, password = password }
    c.redis_timeout = timeout
    c.target = format("%s:%d/%d", host, port, db)
    -- the constant arguments as strings, formatted once (numbers would be on every request)
    c.args = { c.sliding and "2" or "1" }
    for k = 1, n do
      c.args[3 * k - 1] = c.limit_str[k]
      c.args[3 * k] = "0"
      c.args[3 * k + 1] = numstr(c.ttl[k])
    end
  end
  states[conf] = c
  return c
end

-- ---------------------------------------------------------------------------------------------
-- Who is counted

local function identifier(c)
  local by, id = c.limit_by, nil
  if by == "consumer" then
    local who = weir.client.get_consumer() or weir.client.get_credential()
    id = who and who.id
  elseif by == "credential" then
    local cred = weir.client.get_credential()
    id = cred and cred.id
  elseif by == "service" then
    local s = weir.router.get_service()
    id = s and s.id
  elseif by == "header" then
    id = weir.request.get_header(c.header_name)
  elseif by == "path" then
    if weir.request.get_path() == c.path then id = c.path end
  end
  if type(id) == "number" then id = tostring(id) end
  if type(id) ~= "string" or id == "" then
    return weir.client.get_forwarded_ip()
  end
  if #id > MAX_IDENTIFIER then id = weir.sha256(id) end
  return id
end

-- ---------------------------------------------------------------------------------------------
-- Counting, with c.weight filled. Each fills c.cur and c.prev (c.cur including this request
-- when it was allowed) and returns true (allowed) or false (refused), or nil, err.

local function count_local(c, id, dict)
  local n, cur, prev, weight, keys = c.n, c.cur, c.prev, c.weight, c.keys
  local prefix = c.prefix
  local allowed = true
  for k = 1, n do
    local i = c.idx[k]
    local key = prefix .. id .. cur_suffix[i] -- one concatenation, no intermediate string
    local v, err = dict:incr(key, 1, 0, c.ttl[k])
    if not v then
      for j = 1, k - 1 do dict:incr(keys[j], -1) end
      return nil, err
    end
    keys[k], cur[k], prev[k] = key, v, 0
    if c.sliding then prev[k] = dict:get(prefix .. id .. prev_suffix[i]) or 0 end
    if v + prev[k] * weight[k] / 1e6 > c.limit[k] then allowed = false end
  end
  if not allowed then
    for k = 1, n do
      dict:incr(keys[k], -1)
      cur[k] = cur[k] - 1
    end
  end
  return allowed
end

-- Circuit breakers, per worker and Redis target: { open_until, backoff, probe_until }.
local breakers = {}
local last_warning, suppressed = -1e18, 0

local function warn(msg, now_ms)
  if now_ms - last_warning < 1000 then
    suppressed = suppressed + 1
    return
  end
  local more = suppressed > 0 and format(" (%d more since the last warning)", suppressed) or ""
  last_warning, suppressed = now_ms, 0
  weir.log.warn(msg, more)
end

local function count_redis(c, id)
  local b = breakers[c.target]
  if not b then
    b = { open_until = 0, backoff = 0, probe_until = 0 }
    breakers[c.target] = b
  end
  local t0 = weir.time.monotonic_ms()
  if b.backoff > 0 then
    -- open: skip Redis; half-open: one request at a time tries it
    if t0 < b.open_until or t0 < b.probe_until then return nil, "skipped", true end
    b.probe_until = t0 + 1000 + (c.redis_timeout or 0)
  end
  local n, keys, args = c.n, c.keys, c.args
  local prefix = c.prefix
  local stride = c.sliding and 2 or 1
  for k = 1, n do
    local i = c.idx[k]
    keys[(k - 1) * stride + 1] = prefix .. id .. cur_suffix[i]
    if stride == 2 then
      keys[2 * k] = prefix .. id .. prev_suffix[i]
      args[3 * k] = c.weight[k]
    end
  end
  local res, err = c.redis:eval(SCRIPT, keys, args)
  if type(res) ~= "table" or type(res[1]) ~= "number" then
    err = err or "unexpected reply"
    local now = weir.time.monotonic_ms()
    -- requests that were waiting together fail together: the pause grows once per failed
    -- probe, not once per request
    if now >= b.open_until then
      b.backoff = b.backoff == 0 and BACKOFF_FIRST_MS or math.min(b.backoff * 2, BACKOFF_MAX_MS)
      b.open_until, b.probe_until = now + b.backoff, 0
    end
    return nil, err
  end
  if b.backoff > 0 then
    b.backoff, b.open_until, b.probe_until = 0, 0, 0
    weir.log.notice("Redis ", c.target, " answers again; counting resumes")
  end
  local cur, prev = c.cur, c.prev
  for k = 1, n do
    cur[k], prev[k] = res[2 * k], res[2 * k + 1]
  end
  return res[1] == 1
end

-- ---------------------------------------------------------------------------------------------
-- The phase

local UNAVAILABLE = { message = "API rate limiting is unavailable" }

-- The previous windows' weights at `now` (0 for fixed windows), in c.weight, in millionths:
-- an integer is sent to Redis without float formatting, and Redis and the headers use the very
-- same weight (prev * weight / 1e6 on both sides).
local function fill_weights(c, now, sec)
  if sec ~= win_second then refresh_windows(sec) end
  local weight, idx, sliding = c.weight, c.idx, c.sliding
  for k = 1, c.n do
    if sliding then
      local i = idx[k]
      weight[k] = floor((win_end[i] - now) / (win_end[i] - win_start[i]) * 1e6)
    else
      weight[k] = 0
    end
  end
end

-- Bound on the first request: the state that checks handlers has no `weir`, and a field path
-- is a lookup per level on every call.
local set_header

function RateLimiting:access(conf)
  if not set_header then set_header = weir.response.set_header end
  local c = states[conf] or prepare(conf)
  local n = c.n
  if n == 0 then return end

  local now = weir.time.now()
  local sec = floor(now)
  fill_weights(c, now, sec)

  local id = identifier(c)
  local allowed, err, skipped
  if c.redis then
    allowed, err, skipped = count_redis(c, id)
    -- other requests of this worker ran while Redis answered: the shared scratch and windows
    -- are this request's again from here on (nothing below waits)
    fill_weights(c, now, sec)
  else
    local dict = weir.shared.weir_rate_limiting
    if dict then
      allowed, err = count_local(c, id, dict)
    else
      err = "no shared dictionary weir_rate_limiting"
    end
  end

  if allowed == nil then
    if not skipped then
      local where = c.redis and ("Redis " .. c.target) or "the local counters"
      warn(format("%s failed (%s); %s", where, tostring(err),
                  c.fault_tolerant and "requests pass uncounted" or "requests are refused with 503"),
           weir.time.monotonic_ms())
    end
    if c.fault_tolerant then return end
    return weir.response.exit(503, UNAVAILABLE)
  end

  -- Headers: every period's limit and remaining count, and the most restrictive period (the
  -- fewest remaining; on a tie the longest) as RateLimit-*.
  local cur, prev, limits, weight = c.cur, c.prev, c.limit, c.weight
  local best_remaining, best_k, retry = nil, nil, 0
  local hide = c.hide
  for k = 1, n do
    local i = c.idx[k]
    local used = cur[k] + prev[k] * weight[k] / 1e6
    local remaining
    if allowed then
      remaining = floor(limits[k] - used)
    elseif used + 1 > limits[k] then
      remaining = 0
      -- when this period lets one more request through
      local wait
      local len = win_end[i] - win_start[i]
      if not c.sliding then
        wait = win_end[i] - now
      elseif cur[k] + 1 <= limits[k] then
        -- within this window, once the previous window's weight has dropped enough
        wait = win_end[i] - len * (limits[k] - 1 - cur[k]) / prev[k] - now
      else
        -- in the next window, once this window's weight has dropped enough
        wait = win_end[i] + len * (1 - (limits[k] - 1) / cur[k]) - now
      end
      if wait > win_end[i] + len - now then wait = win_end[i] + len - now end
      if wait > retry then retry = wait end
    else
      remaining = floor(limits[k] - used)
    end
    if remaining < 0 then remaining = 0 end
    if not hide then
      set_header(HDR_LIMIT[i], c.limit_str[k])
      set_header(HDR_REMAINING[i], numstr(remaining))
    end
    if not best_remaining or remaining <= best_remaining then
      best_remaining, best_k = remaining, k
    end
  end

  if not hide then
    local reset
    if allowed then
      reset = ceil(win_end[c.idx[best_k]] - now)
    else
      reset = ceil(retry)
    end
    if reset < 1 then reset = 1 end
    reset = numstr(reset)
    set_header("RateLimit-Limit", c.limit_str[best_k])
    set_header("RateLimit-Remaining", numstr(best_remaining))
    set_header("RateLimit-Reset", reset)
    if not allowed then
      set_header("Retry-After", reset)
    end
  end

  if not allowed then
    return weir.response.exit(c.error_code, c.error_body)
  end
end

return RateLimiting
