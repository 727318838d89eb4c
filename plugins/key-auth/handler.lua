-- key-auth: authenticates requests that carry an API key, as Kong's key-auth plugin does.
--
-- For each name of key_names in turn, the key is looked for in a request header
-- (key_in_header), the query (key_in_query) and a JSON or form body (key_in_body); the first
-- string found is the key. It must be a consumer's key-auth credential
-- (weir.client.load_credential: one lookup in the snapshot's index). The consumer is then
-- announced to the upstream (X-Consumer-*, whatever the client sent under those names is
-- replaced or removed) and to later plugins (weir.client.authenticate, which also lets the
-- consumer's own plugin instances join the chain); hide_credentials removes the key before the
-- request goes upstream. With `anonymous` set, a request without a valid key goes on as that
-- consumer instead of getting a 401.

local KeyAuthHandler = {
  PRIORITY = 1250,
  VERSION = "1.0.0",
}

local type, ipairs, tostring, char, tonumber = type, ipairs, tostring, string.char, tonumber
local concat = table.concat

local CONSUMER_HEADERS = { "X-Consumer-ID", "X-Consumer-Custom-ID", "X-Consumer-Username",
                           "X-Credential-Identifier", "X-Anonymous-Consumer" }

-- nil for an absent or JSON null config value
local function given(v)
  if v == nil or v == weir.json.null then return nil end
  return v
end

local function challenge(conf)
  return 'Key realm="' .. (given(conf.realm) or "weir") .. '"'
end

-- The decoded body as a table, or nil (no body, another content type, not an object). Read at
-- most once per request.
local function body_table(state)
  if state.body == nil then
    local body, err = weir.request.get_body()
    if type(body) ~= "table" then
      if err then weir.log.info("cannot read the request body for a key: ", err) end
      body = false
    end
    state.body = body
  end
  return state.body or nil
end

local function url_decode(s)
  s = s:gsub("%+", " ")
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- The client's raw query without the parameters called `name` (the others keep their exact
-- encoding), or nil when there is none of that name.
local function query_without(name)
  local raw = weir.request.get_raw_query()
  if raw == "" then return nil end
  local kept, removed = {}, false
  for pair in raw:gmatch("[^&]+") do
    if url_decode(pair:match("^[^=]*")) == name then removed = true else kept[#kept + 1] = pair end
  end
  if not removed then return nil end
  return concat(kept, "&")
end

-- hide_credentials: removes the key called `name` from every place the plugin reads keys from.
local function hide(conf, name, state)
  local query = query_without(name)
  if query then weir.service.request.set_raw_query(query) end
  weir.service.request.clear_header(name)
  if conf.key_in_body then
    local body = body_table(state)
    if body and body[name] ~= nil then
      body[name] = nil
      weir.service.request.set_body(body)
    end
  end
end

local function clear_consumer_headers()
  for _, name in ipairs(CONSUMER_HEADERS) do weir.service.request.clear_header(name) end
end

local function set_consumer(consumer, credential)
  weir.client.authenticate(consumer, credential)
  local req = weir.service.request
  local function set(name, v)
    if v ~= nil and v ~= weir.json.null then
      req.set_header(name, tostring(v))
    else
      req.clear_header(name)
    end
  end
  set("X-Consumer-ID", consumer and consumer.id)
  set("X-Consumer-Custom-ID", consumer and consumer.custom_id)
  set("X-Consumer-Username", consumer and consumer.username)
  set("X-Credential-Identifier", credential and credential.id)
  set("X-Anonymous-Consumer", (not credential) and "true" or nil)
end

-- Authenticates the request: true, or false and the message of a 401.
local function authenticate(conf)
  local headers = conf.key_in_header and weir.request.get_headers() or nil
  local query = conf.key_in_query and weir.request.get_query() or nil
  local state = {}
  local key
  for _, name in ipairs(conf.key_names) do
    local v
    if headers then v = headers[name] end
    if v == nil and query then v = query[name] end
    if v == nil and conf.key_in_body then
      local body = body_table(state)
      if body then v = body[name] end
    end
    if type(v) == "string" then
      key = v
      if conf.hide_credentials then hide(conf, name, state) end
      break
    elseif type(v) == "table" then
      return false, "Duplicate API key found"
    end
  end
  if not key or key == "" then return false, "No API key found in request" end

  local credential, consumer = weir.client.load_credential("key-auth", key)
  if not credential then return false, "Unauthorized" end
  set_consumer(consumer, credential)
  return true
end

function KeyAuthHandler:access(conf)
  if not conf.run_on_preflight and weir.request.get_method() == "OPTIONS" then
    -- let the preflight through unauthenticated, but never with identity headers the client made
    clear_consumer_headers()
    return
  end

  local anonymous = given(conf.anonymous)
  -- with an anonymous consumer, auth plugins are alternatives (Kong's logical OR): one that
  -- already identified a credential is enough
  if anonymous and weir.client.get_credential() then return end

  local ok, message = authenticate(conf)
  if ok then return end
  if not anonymous then
    return weir.response.exit(401, { message = message },
                              { ["WWW-Authenticate"] = challenge(conf) })
  end
  local consumer = weir.client.load_consumer(anonymous, true)
  if not consumer then
    weir.log.err("the anonymous consumer '", anonymous, "' is configured but does not exist")
    return weir.response.exit(500, { message = "An unexpected error occurred" })
  end
  set_consumer(consumer, nil)
end

return KeyAuthHandler
