-- weir.transform: what the bundled request-transformer and response-transformer share, so the
-- two apply Kong's semantics the same way: their "name:value" config lists, Kong's append of a
-- JSON value, the JSON media type test and the rename of a (possibly repeated) header field.
--
-- A helper of the bundled plugins, not part of the PDK (docs/pdk.md): it changes with them.
-- Handlers require it when they load, which also happens in the VM that checks handlers and has
-- no `weir` table, so only the functions below touch `weir`, when they are called.

local lower, type, ipairs, setmetatable, getmetatable =
  string.lower, type, ipairs, setmetatable, getmetatable

local M = {}

-- A plain copy of a config list of names (nil: an empty list).
function M.plain(list)
  local out = {}
  for i = 1, #(list or {}) do out[i] = list[i] end
  return out
end

-- A config list of "name:value" strings (the schemas require the colon; nil: an empty list) ->
-- { {name, value, type}, ... }, the value split at the first colon and the type the same
-- element of `types` (response-transformer's json_types) or "string".
function M.split_pairs(list, types)
  local out = {}
  for i = 1, #(list or {}) do
    local s = list[i]
    local c = s:find(":", 1, true)
    out[i] = { s:sub(1, c - 1), s:sub(c + 1), types and types[i] or "string" }
  end
  return out
end

-- Kong's append_value on a decoded JSON field: nothing (or null) -> the value; an array -> one
-- more element; a value -> an array of both.
function M.append_value(old, value)
  if old == nil or old == weir.json.null then return value end
  if type(old) == "table" and getmetatable(old) == weir.json.array_mt then
    old[#old + 1] = value
    return old
  end
  return setmetatable({ old, value }, weir.json.array_mt)
end

-- "Application/JSON; charset=utf-8" -> "application/json": the lower-cased type/subtype, or nil
-- when content_type is not a string (no Content-Type).
function M.media_type(content_type)
  if type(content_type) ~= "string" then return nil end
  return lower(content_type:match("^%s*([^;%s]+)") or "")
end

-- True for application/json and application/<anything>+json (a media_type() result).
function M.is_json(mime)
  return mime == "application/json" or mime:match("^application/[^/]+%+json$") ~= nil
end

-- Renames a header field through `api` (weir.service.request or weir.response, which have the
-- same setters): `old` goes, and `new` gets v, the field's value or, for a repeated field, the
-- array of its values (as get_headers gives them), in place of whatever `new` had.
function M.rename_header(api, old, new, v)
  api.clear_header(old)
  if type(v) == "table" then
    api.clear_header(new)
    for _, x in ipairs(v) do api.add_header(new, x) end
  else
    api.set_header(new, v)
  end
end

return M
