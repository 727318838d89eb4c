-- hit-counter: counts each route's requests in a weir.shared dictionary and tells the client the
-- count in a response header.
--
-- The count is kept per route id, in the dictionary conf.dict, which every worker shares: it is
-- the gateway's count, not one worker's. A request is counted in the access phase, so a request
-- that a plugin running earlier refused (weir.response.exit) is not counted, and carries no
-- header. Without the dictionary the plugin says so once in the error log and lets requests
-- through uncounted: a counter must never be why an API is down.

local HitCounter = {
  PRIORITY = 900, -- after authentication plugins (1000 and up), so refused requests do not count
  VERSION = "1.0.0",
}

-- Dictionaries already reported missing, per worker VM: one log line, not one per request.
local reported_missing = {}

function HitCounter:access(conf)
  local dict = weir.shared[conf.dict]
  if not dict then
    if not reported_missing[conf.dict] then
      reported_missing[conf.dict] = true
      weir.log.err("no shared dictionary \"", conf.dict, "\": declare it in weir.shared_dicts; ",
                   "requests are not counted")
    end
    return
  end
  local count, err = dict:incr("route:" .. weir.router.get_route().id, 1, 0)
  if not count then
    -- a full dictionary whose entries cannot be evicted: skip this one, the next may fit
    weir.log.warn("cannot count this request: ", err)
    return
  end
  weir.ctx.plugin.count = count
end

function HitCounter:response(conf)
  local count = weir.ctx.plugin.count
  if count then
    weir.response.set_header(conf.header, string.format("%d", count))
  end
end

return HitCounter
