-- response-transformer: Kong's response-transformer on the Weir PDK. Changes response headers
-- and the top-level keys of a JSON object body, in Kong's order: remove, rename, replace, add,
-- append. Values are plain strings, typed by json_types. See docs/plugins/response-transformer.md.
--
-- Only an instance with JSON operations has the upstream body collected (BUFFER_RESPONSE is a
-- function of the config); one with header operations only leaves the body streaming.

local ResponseTransformer = {
  PRIORITY = 800,
  VERSION = "1.0.0",
}

local transform = require "weir.transform"

local lower = string.lower
local split_pairs, plain, append_value = transform.split_pairs, transform.plain,
  transform.append_value

-- A compressed body is inflated up to this size (a small gzip must not expand into gigabytes);
-- a larger one passes unchanged, with a warning.
local MAX_INFLATED = 16 * 1024 * 1024

-- conf -> split "name:value" lists and flags, computed once per configuration
local prepared = setmetatable({}, { __mode = "k" })

local function prepare(conf)
  local p = prepared[conf]
  if p then return p end
  local remove, rename = conf.remove or {}, conf.rename or {}
  local replace, add, append = conf.replace or {}, conf.add or {}, conf.append or {}
  p = {
    remove = { headers = plain(remove.headers), json = plain(remove.json) },
    rename = { headers = split_pairs(rename.headers), json = split_pairs(rename.json) },
    replace = { headers = split_pairs(replace.headers),
                json = split_pairs(replace.json, replace.json_types) },
    add = { headers = split_pairs(add.headers), json = split_pairs(add.json, add.json_types) },
    append = { headers = split_pairs(append.headers),
               json = split_pairs(append.json, append.json_types) },
  }
  p.has_json = #p.remove.json + #p.rename.json + #p.replace.json + #p.add.json
               + #p.append.json > 0
  p.has_headers = #p.remove.headers + #p.rename.headers + #p.replace.headers
                  + #p.add.headers + #p.append.headers > 0
  prepared[conf] = p
  return p
end

-- Called by the runtime once per instance and configuration: buffer the body only for JSON ops.
function ResponseTransformer.BUFFER_RESPONSE(conf)
  return prepare(conf).has_json
end

-- A JSON value from a configured string and its type; nil when it is not of that type.
local function cast(value, t)
  if t == "number" then return tonumber(value) end
  if t == "boolean" then
    if value == "true" then return true end
    if value == "false" then return false end
    return nil
  end
  return value
end

local function is_json(content_type)
  local mime = transform.media_type(content_type)
  return mime ~= nil and transform.is_json(mime)
end

local function transform_headers(p)
  local resp = weir.response
  local function present(name) return resp.get_header(name) ~= nil end
  for _, name in ipairs(p.remove.headers) do resp.clear_header(name) end
  for _, r in ipairs(p.rename.headers) do
    local v = resp.get_headers(1000)[lower(r[1])]
    if v ~= nil then transform.rename_header(resp, r[1], r[2], v) end
  end
  for _, r in ipairs(p.replace.headers) do
    if present(r[1]) then resp.set_header(r[1], r[2]) end
  end
  for _, r in ipairs(p.add.headers) do
    if not present(r[1]) then resp.set_header(r[1], r[2]) end
  end
  for _, r in ipairs(p.append.headers) do resp.add_header(r[1], r[2]) end
end

local function transform_json(p, doc)
  for _, name in ipairs(p.remove.json) do doc[name] = nil end
  for _, r in ipairs(p.rename.json) do
    local v = doc[r[1]]
    if v ~= nil then
      doc[r[1]] = nil
      doc[r[2]] = v
    end
  end
  for _, r in ipairs(p.replace.json) do
    local v = cast(r[2], r[3])
    if v ~= nil and doc[r[1]] ~= nil then doc[r[1]] = v end
  end
  for _, r in ipairs(p.add.json) do
    local v = cast(r[2], r[3])
    if v ~= nil and doc[r[1]] == nil then doc[r[1]] = v end
  end
  for _, r in ipairs(p.append.json) do
    local v = cast(r[2], r[3])
    if v ~= nil then doc[r[1]] = append_value(doc[r[1]], v) end
  end
end

local function transform_body(p)
  if not is_json(weir.response.get_header("Content-Type")) then return end
  -- gzip and deflate bodies are inflated, changed and compressed again in the same format, as
  -- Kong does; other encodings (br, ...) pass unchanged
  local encoding = weir.response.get_header("Content-Encoding")
  local format
  if encoding then
    encoding = lower(encoding)
    if encoding == "gzip" or encoding == "x-gzip" then
      format = "gzip"
    elseif encoding == "deflate" then
      format = "zlib"
    elseif encoding ~= "identity" then
      weir.log.debug("response-transformer: a ", encoding, " body is passed on unchanged")
      return
    end
  end
  local body = weir.response.get_raw_body()
  if not body or body == "" then return end
  if format then
    local plain, err = weir.zlib.inflate(body, MAX_INFLATED)
    if not plain then
      weir.log.warn("response-transformer: a ", encoding, " body is passed on unchanged: ", err)
      return
    end
    body = plain
  end
  -- only a JSON object has keys: an array, a scalar, invalid JSON or no body are left alone
  if not body:find("^%s*{") then return end
  local doc = weir.json.decode(body)
  if type(doc) ~= "table" then return end
  transform_json(p, doc)
  body = assert(weir.json.encode(doc))
  if format then body = weir.zlib.deflate(body, format) end
  weir.response.set_raw_body(body)
end

function ResponseTransformer:response(conf)
  local p = prepare(conf)
  -- the body is judged by the upstream's headers, before the header operations change them
  if p.has_json then transform_body(p) end
  if p.has_headers then transform_headers(p) end
end

return ResponseTransformer
