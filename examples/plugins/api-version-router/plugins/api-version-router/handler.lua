-- api-version-router: sends a request to the upstream path of the API version the client asked
-- for in a header, e.g. "X-API-Version: 2" turns GET /users into GET /v2/users upstream.
--
-- The header's value is a major version, optionally written "v2" or with a minor part ("2.1":
-- the minor part is ignored, since one upstream path serves every minor version). Without the
-- header the default version is used. A value that is not a version, or a version the route does
-- not serve, is answered 400 by the gateway: the upstream never sees a request it cannot route.
-- The response tells the client which version answered, in the same header.

local Router = {
  PRIORITY = 800, -- after authentication and rate limiting: refused requests need no routing
  VERSION = "1.0.0",
}

-- "2", "v2", "V2", "2.1", " 2 ": the major version is capture 1.
local VERSION_RE = [[^\s*v?(\d+)(?:\.\d+)*\s*$]]

local function serves(conf, major)
  for _, v in ipairs(conf.versions) do
    if v == major then return true end
  end
  return false
end

local function refuse(conf, message)
  local supported = {}
  for i, v in ipairs(conf.versions) do supported[i] = v end
  return weir.response.exit(400, { message = message, supported_versions = supported })
end

function Router:access(conf)
  local asked = weir.request.get_header(conf.header)
  local major = conf.default_version
  if asked then
    local m, err = weir.re.match(asked, VERSION_RE, "joi")
    if err then error("api-version-router: " .. err) end -- a bug here, not the client's
    if not m then
      return refuse(conf, "invalid " .. conf.header .. ": expected a version such as 2 or v2")
    end
    major = tostring(tonumber(m[1])) -- "02" is version 2
  end
  if not serves(conf, major) then
    return refuse(conf, "API version " .. major .. " is not served here")
  end
  weir.service.request.set_path(conf.path_prefix .. major .. weir.request.get_path())
  weir.ctx.plugin.version = major
end

function Router:response(conf)
  local version = weir.ctx.plugin.version
  if version then weir.response.set_header(conf.header, version) end
end

return Router
