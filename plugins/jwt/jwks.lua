-- plugins.jwt.jwks: the keys of a JWKS source ({"file": path} or {"url": ...}), kept fresh.
--
-- The source's text is cached across workers in the built-in shared dictionary weir_cache, under
-- "jwt:jwks:<source>:" + "text" (the JWKS JSON), "ver" (bumped on each change) and "at" (when a
-- fetch was last tried), with a "lock" entry while one worker fetches. Each worker parses the
-- text once per version into keys by kid. A fetch happens when nothing is cached yet, every
-- refresh_interval (a timer in each worker that uses the source), and when a token names a kid
-- that is not there; the last two at most once per min_refresh_interval (resp. 0.9 interval) across
-- all workers. A worker that finds another one fetching waits for its result instead (at most
-- the fetch timeout). A failed fetch is logged and keeps the keys already cached.

local jwk = require "plugins.jwt.jwk"

local M = {}

local FETCH_TIMEOUT_MS = 5000
local MAX_BODY = 1048576

-- per worker: source id -> { ver =, keys =, conf =, timer =, used = }
local sources = {}

local function dict() return weir.shared.weir_cache end

local function source_id(conf)
  if conf.url then return "url:" .. conf.url end
  return "file:" .. conf.file
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read(MAX_BODY + 1)
  f:close()
  if text and #text > MAX_BODY then return nil, path .. ": larger than 1 MiB" end
  return text or ""
end

local function download(url)
  local res, err = weir.http.request{ url = url, timeout = FETCH_TIMEOUT_MS, max_body = MAX_BODY,
                                      headers = { Accept = "application/json" } }
  if not res then return nil, err end
  if res.status ~= 200 then return nil, "status " .. res.status end
  return res.body
end

-- Waits (up to the fetch timeout) while another worker fetches; true when the version moved.
local function wait_for_fetch(d, prefix)
  local ver = d:get(prefix .. "ver")
  local deadline = weir.time.monotonic_ms() + FETCH_TIMEOUT_MS
  while d:get(prefix .. "lock") and weir.time.monotonic_ms() < deadline do
    weir.sleep(0.02)
  end
  return d:get(prefix .. "ver") ~= ver
end

-- Fetches the source into the shared cache, unless the last try (by any worker) was less than
-- `min_interval` seconds ago. Only one worker at a time: when another one is fetching, this one
-- waits for the version it writes instead. Returns true when the cached text may be newer.
local function fetch(id, conf, prefix, min_interval)
  local d = dict()
  if d:get(prefix .. "lock") then return wait_for_fetch(d, prefix) end
  local at = d:get(prefix .. "at")
  if at and weir.time.now() - at < min_interval then return false end
  if not d:add(prefix .. "lock", true, FETCH_TIMEOUT_MS / 1000 + 1) then
    return wait_for_fetch(d, prefix)
  end
  d:set(prefix .. "at", weir.time.now())
  local text, err
  if conf.url then text, err = download(conf.url) else text, err = read_file(conf.file) end
  local changed = false
  if text then
    local keys, skipped, why = jwk.parse_set(text)
    if not keys then
      err = skipped
    else
      if skipped > 0 then
        weir.log.warn("jwt: JWKS ", id, ": ", skipped, " key(s) skipped, e.g. ", why)
      end
      if d:get(prefix .. "text") ~= text then
        local ok, serr = d:safe_set(prefix .. "text", text)
        if ok then
          d:incr(prefix .. "ver", 1, 0)
          changed = true
        else
          err = "cannot cache it in weir_cache: " .. tostring(serr)
        end
      end
    end
  end
  if err then weir.log.err("jwt: cannot load the JWKS ", id, ": ", err) end
  d:delete(prefix .. "lock")
  return changed
end

local function schedule(id, entry)
  local interval = entry.conf.refresh_interval
  local ok = weir.timer.at(interval, function(premature)
    if premature then return end
    local now = weir.time.now()
    -- a source no request used for two intervals (a removed or changed config) stops here; the
    -- next request that needs it starts the timer again
    if now - entry.used > 2 * interval then
      entry.timer = false
      return
    end
    local prefix = "jwt:jwks:" .. id .. ":"
    fetch(id, entry.conf, prefix, interval * 0.9)
    schedule(id, entry)
  end)
  entry.timer = ok and true or false
end

-- The worker's view of the source, reparsed when the shared version moved.
local function current(id, entry, prefix)
  local d = dict()
  local ver = d:get(prefix .. "ver")
  if ver and ver ~= entry.ver then
    local text = d:get(prefix .. "text")
    local keys = text and jwk.parse_set(text)
    if keys then
      entry.keys, entry.ver = keys, ver
    else
      entry.ver = nil -- evicted: fetch again
    end
  end
  return entry.ver ~= nil
end

-- The key for `kid` in the source `conf`, or nil. Waits when the source must be fetched.
function M.find(conf, kid)
  local id = source_id(conf)
  local prefix = "jwt:jwks:" .. id .. ":"
  local entry = sources[id]
  if not entry then
    entry = { keys = {} }
    sources[id] = entry
  end
  entry.conf, entry.used = conf, weir.time.now()
  if not entry.timer then schedule(id, entry) end

  -- nothing loaded yet (or evicted): fetch, or wait for the worker that is fetching
  if not current(id, entry, prefix) then
    fetch(id, conf, prefix, conf.min_refresh_interval)
    current(id, entry, prefix)
  end
  local key = entry.keys[kid]
  if key then return key end
  -- an unknown kid: the identity provider may have rotated its keys
  fetch(id, conf, prefix, conf.min_refresh_interval)
  current(id, entry, prefix)
  return entry.keys[kid]
end

return M
