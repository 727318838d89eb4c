-- jwt: authenticates requests that carry a JSON Web Token, as Kong's jwt plugin does.
--
-- The token comes from the query (uri_param_names), a cookie (cookie_names) or a "Bearer"
-- header (header_names); different tokens in several of those places are refused. Its key claim
-- (key_claim_name, "iss" by default, read from the claims and then the header) names a JWT
-- credential of a consumer, whose algorithm the token must use and whose secret or public key
-- must verify it (weir.jwt.verify, which also refuses any other alg, so `none` and an HMAC token
-- made with a public key never pass). With a `jwks` source configured, a token whose `kid` is
-- one of the source's keys is verified with that key, by the algorithm the key allows, instead.
-- Only then are the registered claims checked (claims_to_verify with leeway, maximum_expiration,
-- allowed_issuers, audience), and the consumer announced to the upstream (X-Consumer-*, whatever
-- the client sent under those names replaced or removed) and to later plugins. With `anonymous`
-- set, a request that fails goes on as that consumer. 401 bodies say what failed, never a secret.

local JwtHandler = {
  PRIORITY = 1450,
  VERSION = "1.0.0",
}

local floor, type, pairs, ipairs, tostring = math.floor, type, pairs, ipairs, tostring

-- Loaded on first use: only configs with `jwks` need it.
local jwks
local function jwks_module()
  jwks = jwks or require "plugins.jwt.jwks"
  return jwks
end

-- PDK functions used on every request, bound on the first (the state that checks handlers when
-- a configuration loads has no `weir`): a field path like weir.service.request.set_header is
-- four lookups per call.
local null, get_header, set_header, clear_header
local function bind_pdk()
  null = weir.json.null
  get_header = weir.request.get_header
  set_header = weir.service.request.set_header
  clear_header = weir.service.request.clear_header
end

local function given(v)
  if v == nil or v == null then return nil end
  return v
end

local function copy_list(v, default)
  v = given(v)
  if v == nil then return default end
  local out = {}
  for i, x in ipairs(v) do out[i] = x end
  return out
end

-- The config as the handler uses it (null counts as not set), computed once per config table.
local settings_of = setmetatable({}, { __mode = "k" })

local function settings(conf)
  local s = settings_of[conf]
  if s then return s end
  s = {
    uri_param_names = copy_list(conf.uri_param_names, { "jwt" }),
    cookie_names = copy_list(conf.cookie_names, {}),
    header_names = copy_list(conf.header_names, { "authorization" }),
    key_claim_name = given(conf.key_claim_name) or "iss",
    secret_is_base64 = given(conf.secret_is_base64) == true,
    claims_to_verify = copy_list(conf.claims_to_verify, {}),
    anonymous = given(conf.anonymous),
    run_on_preflight = given(conf.run_on_preflight) ~= false,
    maximum_expiration = given(conf.maximum_expiration) or 0,
    realm = given(conf.realm) or "weir",
    leeway = given(conf.leeway) or 0,
    allowed_issuers = copy_list(conf.allowed_issuers, {}),
    audience = copy_list(conf.audience, {}),
  }
  local j = given(conf.jwks)
  if j then
    s.jwks = {
      url = given(j.url), file = given(j.file),
      refresh_interval = given(j.refresh_interval) or 300,
      min_refresh_interval = given(j.min_refresh_interval) or 10,
      consumer_claim = given(j.consumer_claim),
    }
  end
  settings_of[conf] = s
  return s
end

-- ---- where the token is -----------------------------------------------------------------------

local byte, sub, find = string.byte, string.sub, string.find

-- s without trailing whitespace (%s), from `from`. A pattern like "(.-)%s*$" would do it, but
-- Lua's matcher retries the tail at every byte of a lazy capture: for a 200-byte token that was
-- a quarter of a policy route's instructions.
local function trim_right(s, from)
  local last = #s
  while last >= from do
    local b = byte(s, last)
    if b ~= 32 and (b < 9 or b > 13) then break end
    last = last - 1
  end
  return sub(s, from, last)
end

local function cookie_value(name)
  local lname = name:lower()
  local cookies = weir.request.get_headers()["cookie"]
  if cookies == nil then return nil end
  if type(cookies) ~= "table" then cookies = { cookies } end
  for _, line in ipairs(cookies) do
    for pair in line:gmatch("[^;]+") do
      local k, rest = pair:match("^%s*([^=]-)%s*=%s*()")
      if k and k:lower() == lname then return trim_right(pair, rest) end
    end
  end
  return nil
end

-- The token as Kong finds it: every distinct token in the configured query parameters, cookies
-- and "Bearer" headers. Returns the token, a table when there are several different ones, a
-- non-string when a query parameter has no value, or nil.
-- Tokens found so far: `first` alone in the common case of one (no table made per request),
-- then a list once a second different one turns up.
local function add_token(first, list, t)
  if t == "" or t == first then return first, list end
  if first == nil then return t, list end
  if not list then list = { first } end
  for i = 1, #list do
    if list[i] == t then return first, list end
  end
  list[#list + 1] = t
  return first, list
end

local function retrieve_token(conf)
  local first, list
  if #conf.uri_param_names > 0 and weir.request.get_raw_query() ~= "" then
    local args = weir.request.get_query()
    for _, name in ipairs(conf.uri_param_names) do
      local v = args[name]
      if type(v) == "table" then
        for _, t in ipairs(v) do first, list = add_token(first, list, t) end
      elseif v ~= nil then
        first, list = add_token(first, list, v)
      end
    end
  end
  -- numeric loops over settings' own lists: ipairs is the runtime's (read-only tables), a call
  local cookie_names, header_names = conf.cookie_names, conf.header_names
  for i = 1, #cookie_names do
    local v = cookie_value(cookie_names[i])
    if v then first, list = add_token(first, list, v) end
  end
  for i = 1, #header_names do
    local value = get_header(header_names[i])
    if value then
      local _, scheme_end = find(value, "^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+")
      if scheme_end then first, list = add_token(first, list, trim_right(value, scheme_end + 1)) end
    end
  end
  return list or first
end

-- ---- answers ----------------------------------------------------------------------------------

local function challenge(conf, with_error)
  local value = 'Bearer realm="' .. conf.realm .. '"'
  if with_error then value = value .. ', error="invalid_token"' end
  return value
end

-- A failure: `message` for the client, or `errors` (Kong's {claim = problem} table) plus a
-- message; `missing` when no token was sent (the challenge then carries no error code).
local function failure(message, errors, missing)
  return { message = message, errors = errors, missing = missing }
end

-- ---- the registered claims --------------------------------------------------------------------

local function add_error(errors, claim, problem)
  errors = errors or {}
  if errors[claim] == nil then
    errors[claim] = problem
    errors[#errors + 1] = problem -- the order, for the message
  end
  return errors
end

local function contains(values, v)
  for i = 1, #values do
    if values[i] == v then return true end
  end
  return false
end

local function check_claims(conf, claims)
  local now = floor(weir.time.now())
  local leeway = conf.leeway
  local errors
  local to_verify = conf.claims_to_verify
  for i = 1, #to_verify do
    local name = to_verify[i]
    local v = claims[name]
    if type(v) ~= "number" then
      errors = add_error(errors, name, "must be a number")
    elseif name == "exp" and v <= now - leeway then
      errors = add_error(errors, name, "token expired")
    elseif name == "nbf" and v > now + leeway then
      errors = add_error(errors, name, "token not valid yet")
    end
  end
  local max = conf.maximum_expiration
  if max > 0 then
    local exp = claims.exp
    if type(exp) ~= "number" or exp - now > max then
      errors = add_error(errors, "exp", "exceeds maximum allowed expiration")
    end
  end
  local issuers = conf.allowed_issuers
  if #issuers > 0 and not contains(issuers, claims.iss) then
    errors = add_error(errors, "iss", "issuer not allowed")
  end
  local audience = conf.audience
  if #audience > 0 then
    local aud = claims.aud
    if type(aud) ~= "table" then aud = { aud } end
    local ok = false
    for _, a in ipairs(aud) do
      if type(a) == "string" and contains(audience, a) then ok = true end
    end
    if not ok then errors = add_error(errors, "aud", "audience not allowed") end
  end
  return errors
end

-- ---- verification -----------------------------------------------------------------------------

local VERIFY_MESSAGES = {
  ["algorithm mismatch"] = "Invalid algorithm",
  ["invalid key"] = "Invalid key/secret",
  ["bad signature"] = "Invalid signature",
}

local function verify_failure(err)
  return failure(VERIFY_MESSAGES[err] or ("Bad token; " .. err))
end

-- Kong's base64 for secret_is_base64: either alphabet, padding optional.
local function decode_secret(s)
  if type(s) ~= "string" then return nil end
  s = s:gsub("%-", "+"):gsub("_", "/")
  if #s % 4 ~= 0 then s = s .. string.rep("=", 4 - #s % 4) end
  return weir.base64.decode(s)
end

-- The token verified with the JWKS key its kid names: claims, nil, key; or nil, failure when the
-- kid is there but the token is wrong; or nil, nil when no key of the source has that kid.
local function verify_with_jwks(conf, token, header)
  local kid = header.kid
  if type(kid) ~= "string" or kid == "" then return nil, nil end
  local key = jwks_module().find(conf.jwks, kid)
  if not key then return nil, nil end
  local alg = header.alg
  if type(alg) ~= "string" or not key.algs[alg] then return nil, failure("Invalid algorithm") end
  local claims, err = weir.jwt.verify(token, key.pem, alg)
  if not claims then return nil, verify_failure(err) end
  return claims, nil, key
end

-- The consumer a JWKS-verified token names through jwks.consumer_claim, or nil when there is none
-- to look for; a failure when the claim is missing or names nobody.
local function jwks_consumer(conf, claims)
  local claim = conf.jwks.consumer_claim
  if not claim then return nil end
  local v = claims[claim]
  if type(v) ~= "string" or v == "" then
    return nil, failure("No mandatory '" .. claim .. "' in claims")
  end
  local consumer = weir.client.load_consumer(v, true)
  if not consumer then return nil, failure("No consumer found for given '" .. claim .. "'") end
  return consumer
end

local function set(name, v)
  if v ~= nil and v ~= null then
    set_header(name, tostring(v))
  else
    clear_header(name)
  end
end

local function set_consumer(consumer, credential)
  weir.client.authenticate(consumer, credential)
  set("X-Consumer-ID", consumer and consumer.id)
  set("X-Consumer-Custom-ID", consumer and consumer.custom_id)
  set("X-Consumer-Username", consumer and consumer.username)
  set("X-Credential-Identifier", credential and credential.key)
  set("X-Anonymous-Consumer", (not credential) and "true" or nil)
end

-- Tokens whose signature this worker verified, with what verified them: a client sends the
-- same token for its whole lifetime, and checking an HMAC or RSA signature again (three JSON
-- parses, the MAC) is most of the plugin's cost. An entry is used only when the token is
-- byte-identical and the credential found for it now has the same algorithm and the same key
-- material: then the signature check would give the same answer. The claims (exp, nbf, iss, aud,
-- maximum_expiration) are checked on every request all the same. Bounded: the table is dropped
-- whole when it reaches VERIFIED_MAX entries (a cheap bound with no per-request bookkeeping).
local VERIFIED_MAX = 2048
local verified, n_verified = {}, 0

local function remember(token, alg, key_material, claims)
  if n_verified >= VERIFIED_MAX then verified, n_verified = {}, 0 end
  n_verified = n_verified + 1
  verified[token] = { alg = alg, key = key_material, claims = claims }
end

-- The credential path for a token verified before: claims, consumer, credential; or nil.
local function recall(conf, token)
  local e = verified[token]
  if not e then return nil end
  local key = e.claims[conf.key_claim_name]
  if type(key) == "number" then key = tostring(key) end
  if type(key) ~= "string" then return nil end
  local cred, owner = weir.client.load_credential("jwt", key)
  if not cred or (given(cred.algorithm) or "HS256") ~= e.alg then return nil end
  local material = e.alg:sub(1, 2) == "HS" and given(cred.secret) or given(cred.rsa_public_key)
  if conf.secret_is_base64 and e.alg:sub(1, 2) == "HS" then material = decode_secret(material) end
  if material ~= e.key then return nil end
  return e.claims, owner, cred
end

-- Authenticates the request: true, or false and a failure.
local function authenticate(conf)
  local token = retrieve_token(conf)
  if token == nil then return false, failure("No JWT found in request", nil, true) end
  if type(token) == "table" then return false, failure("Multiple tokens provided") end
  if type(token) ~= "string" or token == "" then return false, failure("Unrecognizable token") end

  if not conf.jwks then
    local claims, consumer, credential = recall(conf, token)
    if claims then
      local errors = check_claims(conf, claims)
      if errors then return false, failure(errors[1], errors) end
      set_consumer(consumer, credential)
      weir.ctx.shared.authenticated_jwt_token = token
      return true
    end
  end

  local decoded, derr = weir.jwt.decode(token)
  if not decoded then return false, failure("Bad token; " .. derr) end
  local header, claims = decoded.header, decoded.claims
  if type(header.alg) ~= "string" then return false, failure("Bad token; invalid alg") end

  local consumer, credential
  if conf.jwks then
    local verified, fail, key = verify_with_jwks(conf, token, header)
    if fail then return false, fail end
    if verified then
      claims = verified
      consumer, fail = jwks_consumer(conf, claims)
      if fail then return false, fail end
      credential = { key = key.kid, id = key.kid }
    end
  end

  if not credential then
    local kcn = conf.key_claim_name
    local key = claims[kcn]
    if key == nil then key = header[kcn] end
    if key == nil then
      if conf.jwks and header.kid then
        return false, failure("No key found for given 'kid'")
      end
      return false, failure("No mandatory '" .. kcn .. "' in claims")
    end
    if type(key) == "number" then key = tostring(key) end
    if type(key) ~= "string" or key == "" then
      return false, failure("Invalid '" .. kcn .. "' in claims")
    end
    local cred, owner = weir.client.load_credential("jwt", key)
    if not cred then
      if conf.jwks and header.kid then
        return false, failure("No key found for given 'kid'")
      end
      return false, failure("No credentials found for given '" .. kcn .. "'")
    end
    local alg = given(cred.algorithm) or "HS256"
    if header.alg ~= alg then return false, failure("Invalid algorithm") end
    local secret
    if alg:sub(1, 2) == "HS" then
      secret = given(cred.secret)
    else
      secret = given(cred.rsa_public_key)
    end
    -- Kong decodes an RSA/EC key too, which can only break it; only secrets are base64
    if conf.secret_is_base64 and alg:sub(1, 2) == "HS" then secret = decode_secret(secret) end
    if not secret or secret == "" then return false, failure("Invalid key/secret") end
    local good, err = weir.jwt.verify(token, secret, alg)
    if not good then return false, verify_failure(err) end
    claims, consumer, credential = good, owner, cred
    -- the key claim as recall() will look it up: from the claims only (not the header)
    if claims[kcn] == key then remember(token, alg, secret, claims) end
  end

  local errors = check_claims(conf, claims)
  if errors then return false, failure(errors[1], errors) end

  set_consumer(consumer, credential)
  weir.ctx.shared.authenticated_jwt_token = token
  return true
end

local function exit_with(conf, fail)
  local body
  if fail.errors then
    body = { message = fail.message }
    for k, v in pairs(fail.errors) do
      if type(k) == "string" then body[k] = v end
    end
  else
    body = { message = fail.message }
  end
  return weir.response.exit(401, body, { ["WWW-Authenticate"] = challenge(conf, not fail.missing) })
end

local CONSUMER_HEADERS = { "X-Consumer-ID", "X-Consumer-Custom-ID", "X-Consumer-Username",
                           "X-Credential-Identifier", "X-Anonymous-Consumer" }

function JwtHandler:access(instance_conf)
  if not null then bind_pdk() end
  local conf = settings(instance_conf)
  if not conf.run_on_preflight and weir.request.get_method() == "OPTIONS" then
    -- let the preflight through unauthenticated, but never with identity headers the client made
    for _, name in ipairs(CONSUMER_HEADERS) do weir.service.request.clear_header(name) end
    return
  end

  local anonymous = conf.anonymous
  -- with an anonymous consumer, auth plugins are alternatives: one that already identified the
  -- client is enough
  if anonymous and weir.client.get_credential() then return end

  local ok, fail = authenticate(conf)
  if ok then return end
  if not anonymous then return exit_with(conf, fail) end
  local consumer = weir.client.load_consumer(anonymous, true)
  if not consumer then
    weir.log.err("jwt: the anonymous consumer '", anonymous, "' is configured but does not exist")
    return weir.response.exit(500, { message = "An unexpected error occurred" })
  end
  set_consumer(consumer, nil)
end

return JwtHandler
