-- weir.test: what a plugin spec uses to drive the gateway `weir plugin test` started for it.
--
--   local gw = require "weir.test"
--
-- gw.configure{ plugins = {...}, routes = {...}, consumers = {...}, ... }
--     Replaces every entity (POST /config on the admin API) with: a service "upstream" pointing at
--     the mock upstream, carrying the given routes that name no service (default: one route
--     "default" on "/"), and everything else given (plugins, consumers, services, upstreams, ...)
--     as the declarative file has it. Raises the admin API's message when it refuses (a plugin
--     config its schema rejects, an unknown plugin, ...). Returns the admin API's answer.
-- gw.reset()  gw.configure{} (the runner calls it before each spec file).
-- gw.request{ method = "GET", path = "/", query = {...}, headers = {...}, body = ..., timeout = 10 }
--     (or gw.request("/path")): one request to the proxy on a fresh connection. headers maps names
--     to a string (or an array of strings: the field repeated); Host, Content-Length and
--     Connection: close are added unless given. A table body is sent as JSON (with Content-Type
--     application/json unless given). Returns a response:
--       res.status, res.body,
--       res.headers    lower-case name -> value (an array of values when the field repeats),
--       res.header_list {{name, value}, ...} as received,
--       res:json()     the body decoded (raises when it is not JSON)
-- gw.upstream_echo(res)  the mock upstream's echo in res (raises when res is not one):
--     { method, path, query, headers = {{name, value}, ...}, body } and echo:header(name), the
--     first value of a request field as the upstream saw it (any case).
-- gw.admin(method, path, body)  a request to the admin API; returns a response as gw.request.
-- gw.error_log()  the gateway's error log so far.
-- gw.wait_until(fn, timeout, what)  calls fn until it returns a truthy value (returned), raising
--     "timed out waiting for <what>" after timeout seconds (default 5).
-- gw.sleep(seconds), gw.now() (monotonic seconds), gw.json (weir.json: encode, decode, null,
-- array_mt, empty_array), gw.proxy_port, gw.admin_port, gw.upstream_port, gw.upstream_url,
-- gw.root (the plugin root under test).

local native = require "weir.test.native"
local json = native.json

local gw = {
  json = json,
  proxy_port = native.proxy_port,
  admin_port = native.admin_port,
  upstream_port = native.upstream_port,
  upstream_url = "http://127.0.0.1:" .. native.upstream_port,
  root = native.root,
  error_log_path = native.error_log,
  now = native.now,
  sleep = native.sleep,
}

local function excerpt(s)
  s = tostring(s)
  if #s > 300 then s = s:sub(1, 300) .. "..." end
  return s
end

local function url_encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function encode_query(q)
  if type(q) == "string" then return q end
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if v == true then
      parts[#parts + 1] = url_encode(k)
    else
      for _, one in ipairs(type(v) == "table" and v or { v }) do
        parts[#parts + 1] = url_encode(k) .. "=" .. url_encode(one)
      end
    end
  end
  return table.concat(parts, "&")
end

-- {name = value | {values}} -> {{name, value}, ...} in name order, and the lower-case names.
local function header_list(headers)
  local list, names = {}, {}
  if headers == nil then return list, names end
  if type(headers) ~= "table" then error("headers must be a table", 3) end
  local keys = {}
  for k in pairs(headers) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, name in ipairs(keys) do
    local v = headers[name]
    for _, one in ipairs(type(v) == "table" and v or { v }) do
      list[#list + 1] = { tostring(name), tostring(one) }
    end
    names[tostring(name):lower()] = true
  end
  return list, names
end

------------------------------------------------------------------------------------- responses

local Response = {}
Response.__index = Response

function Response:json()
  local v, err = json.decode(self.body)
  if v == nil and err then
    error("the response body is not JSON (" .. err .. "): " .. excerpt(self.body), 2)
  end
  return v
end

local function new_response(status, list, body)
  local headers = {}
  for _, field in ipairs(list) do
    local name, value = field[1]:lower(), field[2]
    local seen = headers[name]
    if seen == nil then
      headers[name] = value
    elseif type(seen) == "table" then
      seen[#seen + 1] = value
    else
      headers[name] = { seen, value }
    end
  end
  return setmetatable({ status = status, headers = headers, header_list = list, body = body },
                      Response)
end

function gw.request(opts)
  if type(opts) == "string" then opts = { path = opts } end
  if type(opts) ~= "table" then error("gw.request: expected a table or a path", 2) end
  local method = opts.method or "GET"
  local port = opts.port or gw.proxy_port
  local path = opts.path or "/"
  if opts.query then
    path = path .. (path:find("?", 1, true) and "&" or "?") .. encode_query(opts.query)
  end
  local list, has = header_list(opts.headers)
  local body = opts.body
  if type(body) == "table" then
    local err
    body, err = json.encode(body)
    if not body then error("gw.request: the body cannot be JSON: " .. err, 2) end
    if not has["content-type"] then list[#list + 1] = { "Content-Type", "application/json" } end
  elseif body ~= nil then
    body = tostring(body)
  end
  if not has.host then list[#list + 1] = { "Host", "127.0.0.1:" .. port } end
  if not has["content-length"] and not has["transfer-encoding"] then
    if body then
      list[#list + 1] = { "Content-Length", tostring(#body) }
    elseif method == "POST" or method == "PUT" or method == "PATCH" then
      list[#list + 1] = { "Content-Length", "0" }
    end
  end
  if not has.connection then list[#list + 1] = { "Connection", "close" } end
  local ok, status, got, rbody = pcall(native.request, port, method, path, list, body,
                                       opts.timeout)
  if not ok then error("gw.request " .. method .. " " .. path .. ": " .. status, 2) end
  return new_response(status, got, rbody)
end

function gw.admin(method, path, body)
  return gw.request{ port = gw.admin_port, method = method, path = path, body = body }
end

------------------------------------------------------------------------------ the mock's echo

local Echo = {}
Echo.__index = Echo

function Echo:header(name)
  name = name:lower()
  for _, field in ipairs(self.headers) do
    if field[1]:lower() == name then return field[2] end
  end
  return nil
end

function gw.upstream_echo(res)
  local ok, echo = pcall(Response.json, res)
  if not ok or type(echo) ~= "table" or echo.method == nil or type(echo.headers) ~= "table" then
    error("not the mock upstream's echo (status " .. tostring(res.status) .. "): "
          .. excerpt(res.body), 2)
  end
  return setmetatable(echo, Echo)
end

---------------------------------------------------------------------------------- configuration

local function as_array(t)
  if next(t) == nil then return json.empty_array end
  return setmetatable(t, json.array_mt)
end

function gw.configure(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("gw.configure: expected a table", 2) end
  local doc = { _format_version = "3.0" }
  for k, v in pairs(opts) do
    if k ~= "routes" and k ~= "services" then
      -- every other key of a declarative file is an array: {} must go out as []
      doc[k] = (type(v) == "table" and next(v) == nil) and json.empty_array or v
    end
  end
  local own, elsewhere = {}, {}
  for _, r in ipairs(opts.routes or { { name = "default", paths = { "/" } } }) do
    if r.service == nil then own[#own + 1] = r else elsewhere[#elsewhere + 1] = r end
  end
  local services = { { name = "upstream", url = gw.upstream_url, routes = as_array(own) } }
  for _, s in ipairs(opts.services or {}) do services[#services + 1] = s end
  doc.services = as_array(services)
  if #elsewhere > 0 then doc.routes = as_array(elsewhere) end

  local res = gw.admin("POST", "/config", doc)
  if res.status ~= 201 then
    local ok, answer = pcall(Response.json, res)
    local message = ok and type(answer) == "table" and answer.message or excerpt(res.body)
    error("gw.configure: the admin API answered " .. res.status .. ": " .. tostring(message), 2)
  end
  return res:json()
end

function gw.reset()
  gw.configure{}
end

--------------------------------------------------------------------------------------- the rest

function gw.error_log()
  local f = io.open(gw.error_log_path, "rb")
  if not f then return "" end
  local text = f:read("*a")
  f:close()
  return text
end

function gw.wait_until(fn, timeout, what)
  local deadline = native.now() + (timeout or 5)
  while true do
    local v = fn()
    if v then return v end
    if native.now() > deadline then
      error("timed out after " .. (timeout or 5) .. "s waiting for " .. (what or "a condition"), 2)
    end
    native.sleep(0.02)
  end
end

return gw
