-- plugins.jwt.jwk: a JSON Web Key (RFC 7517) as what weir.jwt.verify takes, a PEM public key.
--
-- RSA keys (n, e) and EC keys (crv, x, y) become a DER SubjectPublicKeyInfo (RFC 5280 4.1,
-- RFC 3279 2.3.1 and RFC 5480 2) wrapped in "-----BEGIN PUBLIC KEY-----"; a key that only gives
-- a certificate chain (x5c) becomes its first certificate's PEM, which weir.jwt.verify reads
-- too. Symmetric ("oct") keys are refused: a JWKS is public, a shared secret in it is a mistake.
--
-- from_jwk(jwk) returns { pem =, algs = {RS256 = true, ...}, kid = } or nil, reason. `algs` is
-- what tokens verified with the key may use: the JWK's own "alg", or else every algorithm of the
-- key's type (RS256/384/512 for RSA, the one ES algorithm of an EC curve). Never an HS algorithm,
-- so a public key can never serve as an HMAC secret (algorithm confusion).

local byte, char, rep, concat = string.byte, string.char, string.rep, table.concat

local M = {}

-- DER: a length, then type-length-value.
local function der_length(n)
  if n < 0x80 then return char(n) end
  if n < 0x100 then return char(0x81, n) end
  if n < 0x10000 then return char(0x82, math.floor(n / 256), n % 256) end
  return char(0x83, math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
end

local function tlv(tag, value)
  return char(tag) .. der_length(#value) .. value
end

-- An unsigned big-endian integer: no leading zeros, and a zero byte in front when the top bit
-- is set (DER integers are signed).
local function der_unsigned(bytes)
  local i = 1
  while i < #bytes and byte(bytes, i) == 0 do i = i + 1 end
  bytes = bytes:sub(i)
  if byte(bytes, 1) >= 0x80 then bytes = "\0" .. bytes end
  return tlv(0x02, bytes)
end

local SEQUENCE, BIT_STRING = 0x30, 0x03
-- rsaEncryption, NULL parameters
local RSA_ALGORITHM = tlv(SEQUENCE, "\6\9\42\134\72\134\247\13\1\1\1" .. "\5\0")
local EC_PUBLIC_KEY = "\6\7\42\134\72\206\61\2\1"                                -- id-ecPublicKey
local CURVES = {
  ["P-256"] = { oid = "\6\8\42\134\72\206\61\3\1\7", size = 32, alg = "ES256" }, -- prime256v1
  ["P-384"] = { oid = "\6\5\43\129\4\0\34", size = 48, alg = "ES384" },          -- secp384r1
  ["P-521"] = { oid = "\6\5\43\129\4\0\35", size = 66, alg = "ES512" },          -- secp521r1
}
local RSA_ALGS = { RS256 = true, RS384 = true, RS512 = true }

local function pem(label, der)
  local b64 = weir.base64.encode(der)
  local lines = {}
  for i = 1, #b64, 64 do lines[#lines + 1] = b64:sub(i, i + 63) end
  return "-----BEGIN " .. label .. "-----\n" .. concat(lines, "\n") .. "\n-----END " .. label
         .. "-----\n"
end

-- A base64url member of the JWK, decoded; nil when absent or not base64url.
local function member(jwk, name)
  local v = jwk[name]
  if type(v) ~= "string" or v == "" then return nil end
  return weir.base64.decode_url((v:gsub("=+$", "")))
end

local function rsa_pem(jwk)
  local n, e = member(jwk, "n"), member(jwk, "e")
  if not n or not e then return nil, "an RSA key needs n and e in base64url" end
  local rsa_public_key = tlv(SEQUENCE, der_unsigned(n) .. der_unsigned(e))
  return pem("PUBLIC KEY", tlv(SEQUENCE, RSA_ALGORITHM .. tlv(BIT_STRING, "\0" .. rsa_public_key)))
end

local function ec_pem(jwk, curve)
  local x, y = member(jwk, "x"), member(jwk, "y")
  if not x or not y then return nil, "an EC key needs x and y in base64url" end
  if #x > curve.size or #y > curve.size then return nil, "x or y is too long for the curve" end
  -- coordinates are fixed-size (RFC 7518 6.2.1.2); pad any a producer shortened
  local point = "\4" .. rep("\0", curve.size - #x) .. x .. rep("\0", curve.size - #y) .. y
  local algorithm = tlv(SEQUENCE, EC_PUBLIC_KEY .. curve.oid)
  return pem("PUBLIC KEY", tlv(SEQUENCE, algorithm .. tlv(BIT_STRING, "\0" .. point)))
end

local function certificate_pem(jwk)
  local chain = jwk.x5c
  local first = type(chain) == "table" and chain[1]
  local der = type(first) == "string" and weir.base64.decode(first)
  if not der then return nil end
  return pem("CERTIFICATE", der)
end

function M.from_jwk(jwk)
  if type(jwk) ~= "table" then return nil, "not an object" end
  if jwk.use ~= nil and jwk.use ~= "sig" then return nil, "not a signing key (use)" end
  local kid = jwk.kid
  if type(kid) ~= "string" or kid == "" then return nil, "no kid" end
  local alg = jwk.alg
  if alg ~= nil and type(alg) ~= "string" then return nil, "alg is not a string" end

  local key, err, algs
  if jwk.kty == "RSA" then
    if alg and not RSA_ALGS[alg] then return nil, "unsupported algorithm " .. alg end
    algs = alg and { [alg] = true } or RSA_ALGS
    if jwk.n ~= nil then key, err = rsa_pem(jwk) else key = certificate_pem(jwk) end
  elseif jwk.kty == "EC" then
    local curve = CURVES[jwk.crv]
    if not curve then return nil, "unsupported curve " .. tostring(jwk.crv) end
    if alg and alg ~= curve.alg then return nil, "alg " .. alg .. " does not fit " .. jwk.crv end
    algs = { [curve.alg] = true }
    if jwk.x ~= nil then key, err = ec_pem(jwk, curve) else key = certificate_pem(jwk) end
  else
    return nil, "unsupported key type " .. tostring(jwk.kty)
  end
  if not key then return nil, err or "no key material (n/e, x/y or x5c)" end
  return { pem = key, algs = algs, kid = kid }
end

-- Every usable key of a JWKS document ({"keys": [...]}) by kid, and how many were skipped with
-- the first reason (for the log).
function M.parse_set(text)
  local doc, err = weir.json.decode(text)
  if type(doc) ~= "table" or type(doc.keys) ~= "table" then
    return nil, "not a JWKS document (" .. (err or "no \"keys\" array") .. ")"
  end
  local keys, skipped, why = {}, 0, nil
  for _, jwk in ipairs(doc.keys) do
    local key, reason = M.from_jwk(jwk)
    if key then
      keys[key.kid] = key
    else
      skipped, why = skipped + 1, why or reason
    end
  end
  return keys, skipped, why
end

return M
