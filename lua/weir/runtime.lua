-- weir.runtime: the Lua half of the plugin runtime, loaded once into each worker's VM.
--
-- freeze(value) makes a config (or a route or service) read-only for plugins: each object becomes
-- an empty proxy whose reads go to the real table and whose writes raise an error; arrays stay
-- plain tables (so #, ipairs, table.concat and unpack work on them) that refuse new elements.
-- pairs, ipairs and next see through the proxies. Values are frozen once per snapshot, never per
-- request.

local rawpairs, rawnext, rawipairs = pairs, next, ipairs
local setmetatable, getmetatable, type, error = setmetatable, getmetatable, type, error

local real_of = setmetatable({}, { __mode = "k" }) -- proxy -> the table it stands for

local function refuse(_, key)
  error("plugin configuration is read-only (tried to set " .. tostring(key) .. ")", 2)
end

local ARRAY_MT = { __newindex = refuse, __metatable = "read-only array" }

local function is_array(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in rawpairs(t) do count = count + 1 end
  return count == n
end

local freeze
freeze = function(v, array_mt)
  if type(v) ~= "table" then return v end
  for k, x in rawpairs(v) do
    if type(x) == "table" then rawset(v, k, freeze(x, array_mt)) end
  end
  local mt = getmetatable(v)
  if (array_mt and mt == array_mt) or is_array(v) then
    return setmetatable(v, ARRAY_MT)
  end
  local proxy = setmetatable({}, { __index = v, __newindex = refuse,
                                   __metatable = "read-only table" })
  real_of[proxy] = v
  return proxy
end

next = function(t, k) return rawnext(real_of[t] or t, k) end
pairs = function(t)
  local real = real_of[t]
  if real then return rawnext, real, nil end
  return rawpairs(t)
end
ipairs = function(t) return rawipairs(real_of[t] or t) end

return {
  freeze = freeze,
  -- the table a read-only proxy stands for (nil for anything else), for the JSON encoder
  real = function(t) return real_of[t] end,
}
