-- correlation-id: gives each request an id in a header (Kong-Request-ID by default), configured
-- as Kong's correlation-id plugin. A request that arrives with the header keeps its value; one
-- without gets a new id from the generator: "uuid", "uuid#counter" (a per-worker UUID and a
-- counter, cheap and unique) or "tracker" (where and when the request was served). The id goes
-- upstream, and to the client too when echo_downstream, on every response: the upstream's, a
-- plugin's exit, an error.
--
-- It runs in the rewrite phase (Kong: access) with the highest bundled priority, so the id
-- exists before any other plugin can answer, even one answering in rewrite.
--
-- header_name X-Request-ID is Weir's own request id, which Weir already keeps (when the client
-- sent a valid one) or generates, forwards and returns: the plugin leaves it to Weir.

local CorrelationId = {
  PRIORITY = 100001,
  VERSION = "1.0.0",
}

local format = string.format

-- Per worker VM: the UUID of "uuid#counter" and its counter (from 1).
local worker_uuid
local worker_counter = 0

local generators = {
  ["uuid"] = function()
    return weir.uuid()
  end,
  ["uuid#counter"] = function()
    if not worker_uuid then worker_uuid = weir.uuid() end
    worker_counter = worker_counter + 1
    return worker_uuid .. "#" .. worker_counter
  end,
  -- Kong's "server_addr-server_port-pid-connection-connection_requests-time" (nginx's
  -- $server_addr, $server_port, worker pid, $connection, $connection_requests, ngx.now())
  ["tracker"] = function()
    local c = weir.client.get_connection()
    return format("%s-%d-%d-%d-%d-%0.3f", c.server_addr, c.server_port, weir.worker.pid(), c.id,
                  c.requests, weir.time.now())
  end,
}

local function weirs_own(name)
  return name:lower() == "x-request-id"
end

function CorrelationId:rewrite(conf)
  if weirs_own(conf.header_name) then return end
  local id = weir.request.get_header(conf.header_name)
  if not id or id == "" then
    id = generators[conf.generator]()
    weir.service.request.set_header(conf.header_name, id)
  end
  weir.ctx.plugin.id = id
end

function CorrelationId:response(conf)
  if not conf.echo_downstream then return end
  local id = weir.ctx.plugin.id
  if id then weir.response.set_header(conf.header_name, id) end
end

return CorrelationId
