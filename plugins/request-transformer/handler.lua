-- request-transformer: Kong's request-transformer on the Weir PDK. Changes the method, the path,
-- headers, query parameters and JSON or form body fields of the request sent upstream, in Kong's
-- order: remove, rename, replace, add, append. Values are plain strings (the schema refuses
-- Kong's $(...) templates). See docs/plugins/request-transformer.md.

local RequestTransformer = {
  PRIORITY = 801,
  VERSION = "1.0.0",
}

local transform = require "weir.transform"

local concat = table.concat
local byte, char, format, lower = string.byte, string.char, string.format, string.lower
local split_pairs, plain, append_value = transform.split_pairs, transform.plain,
  transform.append_value

-- conf -> the "name:value" lists split once: { remove = {headers = {names}, ...},
-- rename = {headers = {{old, new}, ...}}, ... , has_body = bool, has_query = bool }
local prepared = setmetatable({}, { __mode = "k" })

local function prepare(conf)
  local p = prepared[conf]
  if p then return p end
  p = {}
  for _, op in ipairs({ "remove", "rename", "replace", "add", "append" }) do
    local section = conf[op] or {}
    local split = op == "remove" and plain or split_pairs
    p[op] = {
      headers = split(section.headers),
      querystring = split(section.querystring),
      body = split(section.body),
    }
    p.has_headers = p.has_headers or #p[op].headers > 0
    p.has_query = p.has_query or #p[op].querystring > 0
    p.has_body = p.has_body or #p[op].body > 0
  end
  local uri = conf.replace and conf.replace.uri
  p.uri = type(uri) == "string" and uri or nil
  p.method = type(conf.http_method) == "string" and conf.http_method or nil
  prepared[conf] = p
  return p
end

-- ------------------------------------------------------------------ urlencoded args

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end

-- "a=1&b&a=2" -> an ordered argument list: { names = {"a", "b"}, vals = { a = {"1", "2"},
-- b = {true} } } where values are decoded strings or true (a bare name). vals[name] is nil
-- once a name is removed; listed[name] keeps a name once in names (first place kept).
local function parse_args(s)
  local args = { names = {}, vals = {}, listed = {} }
  for part in s:gmatch("[^&]+") do
    local eq = part:find("=", 1, true)
    local name, value
    if eq then
      name, value = unescape(part:sub(1, eq - 1)), unescape(part:sub(eq + 1))
    else
      name, value = unescape(part), true
    end
    local vals = args.vals[name]
    if not vals then
      vals = {}
      args.vals[name] = vals
      if not args.listed[name] then
        args.listed[name] = true
        args.names[#args.names + 1] = name
      end
    end
    vals[#vals + 1] = value
  end
  return args
end

local function encode_args(args)
  local out = {}
  for _, name in ipairs(args.names) do
    local vals = args.vals[name]
    if vals then
      for _, v in ipairs(vals) do
        out[#out + 1] = v == true and escape(name) or escape(name) .. "=" .. escape(v)
      end
    end
  end
  return concat(out, "&")
end

local function args_set(args, name, vals)
  if not args.listed[name] then
    args.listed[name] = true
    args.names[#args.names + 1] = name
  end
  args.vals[name] = vals
end

-- Kong's order on an argument list; returns true when something changed.
local function transform_args(args, p, key)
  local changed = false
  for _, name in ipairs(p.remove[key]) do
    if args.vals[name] then
      args.vals[name] = nil
      changed = true
    end
  end
  for _, r in ipairs(p.rename[key]) do
    local vals = args.vals[r[1]]
    if vals then
      args.vals[r[1]] = nil
      args_set(args, r[2], vals)
      changed = true
    end
  end
  for _, r in ipairs(p.replace[key]) do
    if args.vals[r[1]] then
      args.vals[r[1]] = { r[2] }
      changed = true
    end
  end
  for _, r in ipairs(p.add[key]) do
    if not args.vals[r[1]] then
      args_set(args, r[1], { r[2] })
      changed = true
    end
  end
  for _, r in ipairs(p.append[key]) do
    local vals = args.vals[r[1]]
    if vals then
      vals[#vals + 1] = r[2]
    else
      args_set(args, r[1], { r[2] })
    end
    changed = true
  end
  return changed
end

-- ------------------------------------------------------------------ JSON body

local function transform_json(doc, p)
  local changed = false
  for _, name in ipairs(p.remove.body) do
    if doc[name] ~= nil then
      doc[name] = nil
      changed = true
    end
  end
  for _, r in ipairs(p.rename.body) do
    local v = doc[r[1]]
    if v ~= nil then
      doc[r[1]] = nil
      doc[r[2]] = v
      changed = true
    end
  end
  for _, r in ipairs(p.replace.body) do
    if doc[r[1]] ~= nil then
      doc[r[1]] = r[2]
      changed = true
    end
  end
  for _, r in ipairs(p.add.body) do
    if doc[r[1]] == nil then
      doc[r[1]] = r[2]
      changed = true
    end
  end
  for _, r in ipairs(p.append.body) do
    doc[r[1]] = append_value(doc[r[1]], r[2])
    changed = true
  end
  return changed
end

-- "application/json; charset=utf-8" -> "json"; form -> "form"; others nil.
local function body_kind(content_type)
  local mime = transform.media_type(content_type)
  if not mime then return nil end
  if transform.is_json(mime) then return "json" end
  if mime == "application/x-www-form-urlencoded" then return "form" end
  return nil -- multipart/form-data and everything else: the body is left as it is
end

local function transform_body(p, kind)
  local body = weir.request.get_raw_body()
  if not body then return end
  if kind == "json" then
    local doc
    if body:find("^%s*$") then
      doc = {}
    else
      -- only a JSON object has fields; an array, a scalar or invalid JSON is left alone
      if not body:find("^%s*{") then return end
      local err
      doc, err = weir.json.decode(body)
      if type(doc) ~= "table" then
        weir.log.debug("request-transformer: body left as is: ", err)
        return
      end
    end
    if transform_json(doc, p) then
      weir.service.request.set_raw_body(assert(weir.json.encode(doc)))
    end
  else
    local args = parse_args(body)
    if transform_args(args, p, "body") then
      weir.service.request.set_raw_body(encode_args(args))
    end
  end
end

-- ------------------------------------------------------------------ headers

-- Kong's semantics on a view of the upstream request's headers (lower-case names) as earlier
-- plugins left them (weir.service.request.get_headers: jwt's X-Consumer-ID counts as present),
-- with the client's Host unless a plugin set one; edits made here are tracked in the view so
-- later operations see them.
local function transform_headers(p)
  local svc = weir.service.request
  local view = {}
  for name, v in pairs(svc.get_headers(1000)) do view[lower(name)] = v end
  if view.host == nil then view.host = weir.request.get_header("Host") end
  for _, name in ipairs(p.remove.headers) do
    local lc = lower(name)
    if view[lc] ~= nil then
      view[lc] = nil
      svc.clear_header(name)
    end
  end
  for _, r in ipairs(p.rename.headers) do
    local old, new = lower(r[1]), r[2]
    local v = view[old]
    if v ~= nil then
      view[old] = nil
      view[lower(new)] = v
      transform.rename_header(svc, r[1], new, v)
    end
  end
  for _, r in ipairs(p.replace.headers) do
    local lc = lower(r[1])
    if view[lc] ~= nil then
      view[lc] = r[2]
      svc.set_header(r[1], r[2])
    end
  end
  for _, r in ipairs(p.add.headers) do
    local lc = lower(r[1])
    if view[lc] == nil then
      view[lc] = r[2]
      svc.set_header(r[1], r[2])
    end
  end
  for _, r in ipairs(p.append.headers) do
    local lc = lower(r[1])
    local v = view[lc]
    if v == nil then
      view[lc] = r[2]
      svc.set_header(r[1], r[2])
    else
      if type(v) ~= "table" then v = { v } end
      v[#v + 1] = r[2]
      view[lc] = v
      svc.add_header(r[1], r[2])
    end
  end
end

-- ------------------------------------------------------------------ the phase

function RequestTransformer:access(conf)
  local p = prepare(conf)
  local svc = weir.service.request

  if p.uri then svc.set_path(p.uri) end

  local kind
  if p.has_body or p.method then kind = body_kind(weir.request.get_header("Content-Type")) end

  local query, query_changed
  if p.method then
    svc.set_method(p.method)
    -- Kong: a form body's fields also go into the query when the method becomes one without
    -- a body
    if kind == "form" and (p.method == "GET" or p.method == "HEAD" or p.method == "TRACE") then
      local body = weir.request.get_raw_body()
      if body and body ~= "" then
        query = parse_args(svc.get_raw_query())
        local fields = parse_args(body)
        for _, name in ipairs(fields.names) do
          local vals = query.vals[name]
          if vals then
            for _, v in ipairs(fields.vals[name]) do vals[#vals + 1] = v end
          else
            args_set(query, name, fields.vals[name])
          end
        end
        query_changed = true
      end
    end
  end

  if p.has_headers then transform_headers(p) end

  if p.has_body and kind then transform_body(p, kind) end

  if p.has_query then
    query = query or parse_args(svc.get_raw_query())
    if transform_args(query, p, "querystring") then query_changed = true end
  end
  if query_changed then svc.set_raw_query(encode_args(query)) end
end

return RequestTransformer
