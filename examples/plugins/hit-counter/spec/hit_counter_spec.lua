-- Specs for hit-counter: run with `weir plugin test examples/plugins/hit-counter`.
-- spec/config.json declares the "hits" dictionary. Counts live as long as the gateway, i.e. the
-- whole run, so each test uses its own route names, or looks at how a count grows.
local gw = require "weir.test"

local function count_of(res)
  return tonumber(res.headers["x-hit-count"])
end

describe("hit-counter", function()
  it("counts each request of a route", function()
    gw.configure{
      routes = { { name = "counted", paths = { "/counted" } } },
      plugins = { { name = "hit-counter" } },
    }
    local first = count_of(gw.request("/counted"))
    assert.truthy(first, "the response has a count")
    assert.equal(first + 1, count_of(gw.request("/counted")))
    assert.equal(first + 2, count_of(gw.request("/counted/deeper")))
  end)

  it("keeps one count per route", function()
    gw.configure{
      routes = { { name = "left", paths = { "/left" } }, { name = "right", paths = { "/right" } } },
      plugins = { { name = "hit-counter" } },
    }
    local left = count_of(gw.request("/left"))
    gw.request("/left")
    gw.request("/left")
    local right = count_of(gw.request("/right"))
    assert.equal(left + 3, count_of(gw.request("/left")))
    assert.equal(right + 1, count_of(gw.request("/right")))
  end)

  it("sends the count in the configured header", function()
    gw.configure{ plugins = { { name = "hit-counter", config = { header = "X-Seen" } } } }
    local res = gw.request("/")
    assert.equal(200, res.status)
    assert.matches("^%d+$", res.headers["x-seen"])
    assert.is_nil(res.headers["x-hit-count"])
  end)

  it("counts only the routes it is scoped to", function()
    gw.configure{
      routes = { { name = "with", paths = { "/with" } }, { name = "without", paths = { "/without" } } },
      plugins = { { name = "hit-counter", route = "with" } },
    }
    assert.truthy(count_of(gw.request("/with")))
    assert.is_nil(count_of(gw.request("/without")))
  end)

  it("counts requests whatever the upstream answers", function()
    gw.configure{ plugins = { { name = "hit-counter" } } }
    local res = gw.request("/status/503")
    assert.equal(503, res.status)
    assert.truthy(count_of(res))
  end)

  it("leaves the request to the upstream unchanged", function()
    gw.configure{ plugins = { { name = "hit-counter" } } }
    local echo = gw.upstream_echo(gw.request{ path = "/x", query = { a = "1" } })
    assert.equal("/x", echo.path)
    assert.equal("a=1", echo.query)
    assert.is_nil(echo:header("x-hit-count"))
  end)

  it("lets requests through uncounted, and says so once, without its dictionary", function()
    gw.configure{ plugins = { { name = "hit-counter", config = { dict = "missing" } } } }
    for _ = 1, 3 do
      local res = gw.request("/")
      assert.equal(200, res.status)
      assert.is_nil(count_of(res))
    end
    local log = gw.wait_until(function()
      local text = gw.error_log()
      return text:find('no shared dictionary "missing"', 1, true) and text
    end, 5, "the missing dictionary in the error log")
    local _, times = log:gsub('no shared dictionary "missing"', "")
    assert.equal(1, times, "reported once")
  end)

  it("refuses a header name that is not a token", function()
    assert.has_error(function()
      gw.configure{ plugins = { { name = "hit-counter", config = { header = "Hit Count" } } } }
    end, "header")
  end)
end)
