-- ip-restriction: lets a client through, or refuses it, by its IP address, configured as Kong's
-- ip-restriction plugin: `allow` and `deny` lists of IPv4/IPv6 addresses and CIDR ranges.
--
-- The client's address is weir.client.get_forwarded_ip(): the peer's, or, when the peer is one of
-- weir.trusted_ips, the rightmost untrusted address of X-Forwarded-For (what the upstream gets
-- as X-Real-IP), so a client cannot pick its address by sending the header itself. As Kong
-- documents, deny wins: an address in `deny` is refused even when `allow` lists it too; with an
-- `allow` list, an address outside it is refused.
--
-- The lists are parsed once per configuration (a weak table keyed by conf) into integer ranges:
-- IPv4 ranges sorted and merged for a binary search, IPv6 ranges as four 32-bit words each. An
-- IPv4-mapped IPv6 address (::ffff:10.0.0.1, as a dual-stack socket reports IPv4 peers), in an
-- entry or from the client, is the IPv4 address it maps.

local IpRestriction = {
  PRIORITY = 990,
  VERSION = "1.0.0",
}

local tonumber = tonumber
local floor = math.floor

local TWO32 = 4294967296

-- "a.b.c.d" -> number, or nil. Octets 0..255 without leading zeros (as the schema and inet_pton).
local function octet(o)
  if #o > 3 or (#o > 1 and o:byte(1) == 48) then return nil end -- no leading "0"
  local v = tonumber(o)
  if v > 255 then return nil end
  return v
end

local function parse_v4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = octet(a), octet(b), octet(c), octet(d)
  if not (a and b and c and d) then return nil end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- The 16-bit groups of one side of "::" (or of a whole address), the last group possibly an
-- embedded IPv4 address when `v4_ok`; nil when malformed.
local function groups_of(part, v4_ok, out)
  if part == "" then return out end
  local items = {}
  for g in (part .. ":"):gmatch("([^:]*):") do items[#items + 1] = g end
  for i, g in ipairs(items) do
    if i == #items and v4_ok and g:find(".", 1, true) then
      local v4 = parse_v4(g)
      if not v4 then return nil end
      out[#out + 1] = floor(v4 / 65536)
      out[#out + 1] = v4 % 65536
    elseif g:match("^%x%x?%x?%x?$") then
      out[#out + 1] = tonumber(g, 16)
    else
      return nil
    end
  end
  return out
end

-- IPv6 text -> eight 16-bit groups, or nil.
local function parse_v6(s)
  local head, tail = s:match("^(.-)::(.*)$")
  local groups
  if head then
    if tail:find("::", 1, true) then return nil end
    local left = groups_of(head, false, {})
    local right = left and groups_of(tail, true, {})
    if not right or #left + #right > 7 then return nil end
    groups = left
    for _ = 1, 8 - #left - #right do groups[#groups + 1] = 0 end
    for _, g in ipairs(right) do groups[#groups + 1] = g end
  else
    groups = groups_of(s, true, {})
    if not groups or #groups ~= 8 then return nil end
  end
  return groups
end

-- An address -> 4, number or 6, {four 32-bit words}; IPv4-mapped IPv6 counts as IPv4. nil when
-- the text is no address.
local function parse_ip(s)
  local v4 = parse_v4(s)
  if v4 then return 4, v4 end
  if not s:find(":", 1, true) then return nil end
  local g = parse_v6(s)
  if not g then return nil end
  if g[1] == 0 and g[2] == 0 and g[3] == 0 and g[4] == 0 and g[5] == 0 and g[6] == 0xffff then
    return 4, g[7] * 65536 + g[8], true
  end
  return 6, { g[1] * 65536 + g[2], g[3] * 65536 + g[4], g[5] * 65536 + g[6], g[7] * 65536 + g[8] }
end

-- "addr" or "addr/prefix" -> family, lo, hi (numbers for IPv4, word arrays for IPv6); bits past
-- the prefix are ignored, as in weir.trusted_ips. nil, reason when malformed.
local function parse_range(entry)
  local addr, prefix = entry:match("^([^/]+)/(%d+)$")
  if not addr then addr = entry end
  local family, ip, mapped = parse_ip(addr)
  if not family then return nil, "not an IP address" end
  local bits = prefix and tonumber(prefix)
  if family == 4 then
    if mapped and bits then
      if bits < 96 then return nil, "an IPv4-mapped range needs a prefix of 96 or more" end
      bits = bits - 96
    end
    bits = bits or 32
    if bits > 32 then return nil, "an IPv4 prefix is at most 32" end
    local size = 2 ^ (32 - bits)
    local lo = ip - ip % size
    return 4, lo, lo + size - 1
  end
  bits = bits or 128
  if bits > 128 then return nil, "an IPv6 prefix is at most 128" end
  local lo, hi = {}, {}
  for w = 1, 4 do
    local keep = bits - (w - 1) * 32 -- bits of this word inside the prefix
    if keep >= 32 then
      lo[w], hi[w] = ip[w], ip[w]
    elseif keep <= 0 then
      lo[w], hi[w] = 0, TWO32 - 1
    else
      local size = 2 ^ (32 - keep)
      lo[w] = ip[w] - ip[w] % size
      hi[w] = lo[w] + size - 1
    end
  end
  return 6, lo, hi
end

-- a <= b for word arrays
local function le6(a, b)
  for w = 1, 4 do
    if a[w] ~= b[w] then return a[w] < b[w] end
  end
  return true
end

-- A list of entries -> { v4 = sorted merged {lo, hi} pairs, v6 = {lo, hi} pairs }.
local function compile_list(list)
  local v4, v6 = {}, {}
  for _, entry in ipairs(list) do
    local family, lo, hi = parse_range(entry)
    if not family then
      -- The schema refuses malformed entries; reaching here is a bug worth a loud failure.
      error("ip-restriction: invalid address or range '" .. tostring(entry) .. "': " .. lo)
    end
    if family == 4 then v4[#v4 + 1] = { lo, hi } else v6[#v6 + 1] = { lo, hi } end
  end
  table.sort(v4, function(a, b) return a[1] < b[1] end)
  local merged = {}
  for _, r in ipairs(v4) do
    local last = merged[#merged]
    if last and r[1] <= last[2] + 1 then
      if r[2] > last[2] then last[2] = r[2] end
    else
      merged[#merged + 1] = { r[1], r[2] }
    end
  end
  return { v4 = merged, v6 = v6, empty = #list == 0 }
end

local function contains(set, family, ip)
  if family == 4 then
    local ranges = set.v4
    local lo, hi = 1, #ranges
    while lo <= hi do
      local mid = floor((lo + hi) / 2)
      local r = ranges[mid]
      if ip < r[1] then
        hi = mid - 1
      elseif ip > r[2] then
        lo = mid + 1
      else
        return true
      end
    end
    return false
  end
  for _, r in ipairs(set.v6) do
    if le6(r[1], ip) and le6(ip, r[2]) then return true end
  end
  return false
end

-- Per config: { allow = set or nil, deny = set or nil }. Weak keys: it goes with its config.
local compiled = setmetatable({}, { __mode = "k" })

local function lists_of(conf)
  local c = compiled[conf]
  if c then return c end
  local null = weir.json.null
  c = {}
  if conf.allow and conf.allow ~= null then c.allow = compile_list(conf.allow) end
  if conf.deny and conf.deny ~= null then c.deny = compile_list(conf.deny) end
  compiled[conf] = c
  return c
end

local function refuse(conf)
  local status = conf.status
  if type(status) ~= "number" then status = 403 end
  local message = conf.message
  if type(message) ~= "string" then message = "Your IP address is not allowed" end
  return weir.response.exit(status, { message = message })
end

function IpRestriction:access(conf)
  local lists = lists_of(conf)
  local ip_text = weir.client.get_forwarded_ip()
  local family, ip = parse_ip(ip_text)
  if not family then
    -- The gateway hands plugins numeric addresses only; refuse rather than guess.
    weir.log.err("cannot parse the client address '", ip_text, "'; refusing the request")
    return refuse(conf)
  end
  if lists.deny and not lists.deny.empty and contains(lists.deny, family, ip) then
    return refuse(conf)
  end
  if lists.allow and not lists.allow.empty and not contains(lists.allow, family, ip) then
    return refuse(conf)
  end
end

return IpRestriction
