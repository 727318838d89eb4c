-- Specs for api-version-router: run with `weir plugin test examples/plugins/api-version-router`.
local gw = require "weir.test"

local function upstream_path(res)
  assert.equal(200, res.status, "the request reached the upstream")
  return gw.upstream_echo(res).path
end

describe("api-version-router", function()
  before_each(function()
    gw.configure{ plugins = { { name = "api-version-router", config = { versions = { "1", "2" } } } } }
  end)

  it("sends a request to the path of the version in the header", function()
    local res = gw.request{ path = "/users/7", headers = { ["X-API-Version"] = "2" } }
    assert.equal("/v2/users/7", upstream_path(res))
  end)

  it("accepts v2, V2 and 2.1 for version 2", function()
    for _, asked in ipairs({ "v2", "V2", "2.1", " 2 " }) do
      local res = gw.request{ path = "/users", headers = { ["X-API-Version"] = asked } }
      assert.equal("/v2/users", upstream_path(res), "for " .. asked)
    end
  end)

  it("uses the default version without the header", function()
    assert.equal("/v1/users", upstream_path(gw.request("/users")))
  end)

  it("keeps the query string", function()
    local res = gw.request{ path = "/search", query = { q = "a b" }, headers = { ["X-API-Version"] = "2" } }
    local echo = gw.upstream_echo(res)
    assert.equal("/v2/search", echo.path)
    assert.equal("q=a%20b", echo.query)
  end)

  it("tells the client which version answered", function()
    local res = gw.request{ path = "/", headers = { ["X-API-Version"] = "v2" } }
    assert.equal("2", res.headers["x-api-version"])
    assert.equal("1", gw.request("/").headers["x-api-version"])
  end)

  it("answers 400 for a version the route does not serve", function()
    local res = gw.request{ path = "/users", headers = { ["X-API-Version"] = "3" } }
    assert.equal(400, res.status)
    assert.same({ message = "API version 3 is not served here", supported_versions = { "1", "2" } },
                res:json())
  end)

  it("answers 400 for a value that is not a version", function()
    local res = gw.request{ path = "/users", headers = { ["X-API-Version"] = "latest" } }
    assert.equal(400, res.status)
    assert.matches("^invalid X%-API%-Version", res:json().message)
  end)

  it("reads the header and prefix it is configured with", function()
    gw.configure{ plugins = { { name = "api-version-router",
                                config = { header = "Accept-Version", versions = { "4" },
                                           default_version = "4", path_prefix = "/api/v" } } } }
    local res = gw.request{ path = "/orders", headers = { ["Accept-Version"] = "4" } }
    assert.equal("/api/v4/orders", upstream_path(res))
    assert.equal("4", res.headers["accept-version"])
  end)

  it("applies only where it is scoped", function()
    gw.configure{
      routes = { { name = "versioned", paths = { "/api" }, strip_path = false },
                 { name = "plain", paths = { "/plain" } } },
      plugins = { { name = "api-version-router", route = "versioned" } },
    }
    assert.equal("/v1/api/x", upstream_path(gw.request("/api/x")))
    -- untouched: the route's own strip_path (true by default) applies
    assert.equal("/x", upstream_path(gw.request("/plain/x")))
  end)

  it("refuses versions that are not plain numbers in its config", function()
    assert.has_error(function()
      gw.configure{ plugins = { { name = "api-version-router", config = { versions = { "v1" } } } } }
    end, "versions")
  end)
end)
