-- url-rewrite: rewrites the upstream path (and query) by an ordered list of PCRE2 rules, or
-- answers with a redirect. See docs/plugins/url-rewrite.md.
--
-- The rules see the path the upstream request will carry as the route delivered it (after
-- strip_path and the service's path): weir.service.request.get_path(). Templates are parsed once
-- per configuration (a weak table keyed by the rule); the regexes are compiled once and cached by
-- weir.re. (The weir table exists only in the workers, not when the configuration loads the
-- handler: it is read in the phase methods.)

local UrlRewrite = {
  PRIORITY = 1000,
  VERSION = "1.0.0",
}

local concat = table.concat
local byte, format = string.byte, string.format

-- rule (a read-only conf table) -> { replace = parts, query = "keep" | "drop" | parts,
-- redirect = status or nil, last = bool }
local compiled = setmetatable({}, { __mode = "k" })

-- A template -> an array of parts: a string (literal), a number (numbered capture), or a table
-- { name = "x" } (named capture), { var = "host" | "query" }. The schema already refused
-- anything else after a $, so a stray $ here can only be literal.
local function parse_template(s)
  local parts, lit = {}, {}
  local function flush()
    if #lit > 0 then
      parts[#parts + 1] = concat(lit)
      lit = {}
    end
  end
  local i, n = 1, #s
  while i <= n do
    local d = s:find("$", i, true)
    if not d then
      lit[#lit + 1] = s:sub(i)
      break
    end
    if d > i then lit[#lit + 1] = s:sub(i, d - 1) end
    local nx = s:sub(d + 1, d + 1)
    if nx == "$" then
      lit[#lit + 1] = "$"
      i = d + 2
    elseif nx:match("^%d$") then
      flush()
      parts[#parts + 1] = tonumber(nx)
      i = d + 2
    elseif nx == "{" and s:find("}", d + 2, true) then
      local close = s:find("}", d + 2, true)
      local name = s:sub(d + 2, close - 1)
      flush()
      parts[#parts + 1] = name:match("^%d+$") and tonumber(name) or { name = name }
      i = close + 1
    elseif s:sub(d + 1, d + 4) == "host" then
      flush()
      parts[#parts + 1] = { var = "host" }
      i = d + 5
    elseif s:sub(d + 1, d + 5) == "query" then
      flush()
      parts[#parts + 1] = { var = "query" }
      i = d + 6
    else
      lit[#lit + 1] = "$"
      i = d + 1
    end
  end
  flush()
  return parts
end

local function compile(rule)
  local c = compiled[rule]
  if c then return c end
  local q = rule.query or "keep"
  local redirect = rule.redirect
  c = {
    replace = parse_template(rule.replace),
    query = (q == "keep" or q == "drop") and q or parse_template(q),
    redirect = type(redirect) == "number" and redirect or nil, -- null is weir.json.null
    last = rule.last ~= false,
  }
  compiled[rule] = c
  return c
end

local function expand(parts, m, query)
  local out = {}
  for i = 1, #parts do
    local p = parts[i]
    local t = type(p)
    local v
    if t == "string" then
      v = p
    elseif t == "number" then
      v = m[p]
    elseif p.name then
      v = m[p.name]
    elseif p.var == "host" then
      v = weir.request.get_host()
    else
      v = query
    end
    out[i] = type(v) == "string" and v or "" -- an unset or absent capture is empty
  end
  return concat(out)
end

local function pct(c)
  return format("%%%02X", byte(c))
end

-- Bytes a query (or a Location's path) cannot carry are percent-encoded.
local function encode_query(q)
  return (q:gsub("[%z\1-\32#\127-\255]", pct))
end

local function encode_location_path(p)
  return (p:gsub("[%z\1-\32#?\"<>\\^`{|}\127-\255]", pct))
end

function UrlRewrite:rewrite(conf)
  local path = weir.service.request.get_path()
  local query = weir.service.request.get_raw_query()
  local changed = false
  local rules = conf.rules
  for i = 1, #rules do
    local rule = rules[i]
    local m, err = weir.re.match(path, rule.match, "jo")
    if err then
      -- e.g. "match limit exceeded": the rule does not apply; say so, once per request
      weir.log.warn("url-rewrite: rule ", i, " (", rule.match, "): ", err)
    elseif m then
      local c = compile(rule)
      local new_path = expand(c.replace, m, query)
      if byte(new_path, 1) ~= 47 then new_path = "/" .. new_path end -- 47: "/"
      local new_query
      if c.query == "keep" then
        new_query = query
      elseif c.query == "drop" then
        new_query = ""
      else
        new_query = encode_query(expand(c.query, m, query))
      end
      path, query, changed = new_path, new_query, true
      if c.redirect then
        local location = encode_location_path(path)
        if query ~= "" then location = location .. "?" .. query end
        return weir.response.exit(c.redirect, "", { Location = location })
      end
      if c.last then break end
    end
  end
  if changed then
    weir.service.request.set_path(path)
    weir.service.request.set_raw_query(query)
  end
end

return UrlRewrite
