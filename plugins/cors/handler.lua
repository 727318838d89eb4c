-- cors: Cross-Origin Resource Sharing for a route or service, configured as Kong's cors plugin.
--
-- A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here, 204 with
-- the Access-Control-* fields, unless preflight_continue hands it to the upstream untouched. Any
-- other response (the upstream's, another plugin's exit, an error) gets Access-Control-Allow-Origin
-- and, as configured, -Allow-Credentials and -Expose-Headers in the response phase.
--
-- conf.origins entries are "*", plain origins ("https://app.example.com", compared after
-- normalisation: lower-case scheme and host, default port dropped) or regular expressions: as in
-- Kong, an entry holding a character outside [A-Za-z0-9.:/-] is a regex, matched whole (anchored
-- at both ends) against the request origin, or against its host alone when the entry has no ":".

local Cors = {
  PRIORITY = 2000,
  VERSION = "1.0.0",
}

local concat = table.concat
local lower = string.lower

local DEFAULT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"

-- A config field, with JSON null (as Kong's declarative exports write unset fields) as nil.
-- (`weir` exists only when requests run, not when the configuration loader reads this file.)
local function field(v)
  if v == weir.json.null then return nil end
  return v
end

-- "scheme://host[:port]" with the default port dropped; host and scheme lower-cased. Anything
-- else ("null", a bare host) is kept as it is, and is its own host.
local function normalize_origin(origin)
  local scheme, host, port = origin:match("^(%a[%w+.-]*)://([^/:?#]+):?(%d*)[/]?$")
  if not scheme then
    -- IPv6 literal: scheme://[::1]:8080
    scheme, host, port = origin:match("^(%a[%w+.-]*)://(%[[%x:.]+%]):?(%d*)[/]?$")
  end
  if not scheme then return { domain = origin, host = origin } end
  scheme, host = lower(scheme), lower(host)
  if port == "" or (scheme == "http" and port == "80") or (scheme == "https" and port == "443") then
    port = nil
  end
  return { domain = scheme .. "://" .. host .. (port and ":" .. port or ""), host = host }
end

-- Per config (weak keys: an old config's entry goes with it): what conf.origins means, parsed
-- once. { allow_all = bool, single = "origin" or nil, entries = { {regex=, by_host=} or
-- {domain=} } }
local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = compiled[conf]
  if c then return c end
  local origins = field(conf.origins) or {}
  c = { entries = {} }
  if #origins == 0 then
    c.allow_all = true
  end
  for _, entry in ipairs(origins) do
    if entry == "*" then
      c.allow_all = true
    elseif entry:find("[^A-Za-z0-9.:/-]") then
      -- Kong anchors every regex: a "^" of the user's is dropped, a "$" added when missing,
      -- and the match is anchored at the start.
      local re = entry
      if re:sub(1, 1) == "^" then re = re:sub(2) end
      if re:sub(-1) ~= "$" then re = re .. "$" end
      c.entries[#c.entries + 1] = { regex = re, by_host = not entry:find(":", 1, true) }
    else
      c.entries[#c.entries + 1] = { domain = normalize_origin(entry).domain }
    end
  end
  -- One plain origin is sent as it is, whatever the request's Origin (as Kong does).
  if #origins == 1 and not c.allow_all and c.entries[1].domain then
    c.single = origins[1]
  end
  compiled[conf] = c
  return c
end

-- The request origin's normalised form when an entry allows it, else nil.
local function allowed_origin(c, req_origin)
  local norm = normalize_origin(req_origin)
  for _, e in ipairs(c.entries) do
    if e.regex then
      local subject = e.by_host and norm.host or norm.domain
      local from, _, err = weir.re.find(subject, e.regex, "ajo")
      if err then weir.log.err("cannot match origin against ", e.regex, ": ", err) end
      if from then return norm.domain end
    elseif e.domain == norm.domain then
      return norm.domain
    end
  end
  return nil
end

-- Adds "Origin" to the response's Vary (in the response phase: to the upstream's own list).
local function vary_origin(in_response)
  if in_response then
    local vary = weir.response.get_header("Vary")
    if vary then
      for token in vary:gmatch("[^,%s]+") do
        if lower(token) == "origin" or token == "*" then return end
      end
      weir.response.set_header("Vary", vary .. ", Origin")
      return
    end
  end
  weir.response.set_header("Vary", "Origin")
end

-- Access-Control-Allow-Origin and -Allow-Credentials, as Kong sets them.
local function set_origin_headers(conf, req_origin, in_response)
  local c = compile(conf)
  if c.allow_all then
    if conf.credentials and req_origin then
      -- "*" cannot go with credentials: the browser needs its own origin back.
      weir.response.set_header("Access-Control-Allow-Origin", req_origin)
      weir.response.set_header("Access-Control-Allow-Credentials", "true")
      vary_origin(in_response)
    else
      weir.response.set_header("Access-Control-Allow-Origin", "*")
    end
    return
  end
  vary_origin(in_response)
  local allow = c.single or (req_origin and allowed_origin(c, req_origin))
  if allow then
    weir.response.set_header("Access-Control-Allow-Origin", allow)
  else
    weir.response.clear_header("Access-Control-Allow-Origin")
  end
  if conf.credentials then
    weir.response.set_header("Access-Control-Allow-Credentials", "true")
  end
end

local function is_preflight()
  return weir.request.get_method() == "OPTIONS"
     and weir.request.get_header("Origin") ~= nil
     and weir.request.get_header("Access-Control-Request-Method") ~= nil
end

function Cors:access(conf)
  if not is_preflight() then return end
  -- A preflight gets no response-phase headers: either the upstream answers it as it likes
  -- (preflight_continue) or this answer already carries them all.
  weir.ctx.plugin.preflight = true
  if conf.preflight_continue then return end

  local req_origin = weir.request.get_header("Origin")
  set_origin_headers(conf, req_origin, false)

  local headers = field(conf.headers)
  if headers and #headers > 0 then
    weir.response.set_header("Access-Control-Allow-Headers", concat(headers, ","))
  else
    local asked = weir.request.get_header("Access-Control-Request-Headers")
    if asked then weir.response.set_header("Access-Control-Allow-Headers", asked) end
  end

  local methods = field(conf.methods)
  local allow_methods = methods and concat(methods, ",") or DEFAULT_METHODS
  if allow_methods ~= "" then
    weir.response.set_header("Access-Control-Allow-Methods", allow_methods)
  end

  local max_age = field(conf.max_age)
  if max_age then
    weir.response.set_header("Access-Control-Max-Age",
      max_age == math.floor(max_age) and string.format("%d", max_age) or tostring(max_age))
  end

  if conf.private_network
     and weir.request.get_header("Access-Control-Request-Private-Network") == "true" then
    weir.response.set_header("Access-Control-Allow-Private-Network", "true")
  end

  return weir.response.exit(204)
end

function Cors:response(conf)
  if weir.ctx.plugin.preflight then return end
  local req_origin = weir.request.get_header("Origin")
  if not req_origin and conf.allow_origin_absent == false then return end

  set_origin_headers(conf, req_origin, true)

  local exposed = field(conf.exposed_headers)
  if exposed and #exposed > 0 then
    weir.response.set_header("Access-Control-Expose-Headers", concat(exposed, ","))
  end
end

return Cors
