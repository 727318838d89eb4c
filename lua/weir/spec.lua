-- weir.spec: the small Busted-like harness `weir plugin test` runs spec files with.
--
-- A spec file runs in an environment of its own (reads fall through to the globals) holding:
--   describe(name, fn)      a block; blocks nest, and their names prefix their tests' names
--   it(name, fn)            a test (without fn: pending)
--   pending(name)           a test reported as pending, never run
--   before_each(fn), after_each(fn)   around every test of the block and of nested blocks
--                           (outer before_each first; after_each runs even when the test failed)
--   setup(fn), teardown(fn) once around a block's tests (lazy_setup, lazy_teardown: the same)
--   assert                  assert(v, msg) as Lua's, and the assertions below
-- describe bodies run while the file loads, tests after it has loaded, in file order. An error
-- while loading (syntax, or in a describe body) fails the file as a whole; an error in a test or
-- its hooks fails that test only.
--
-- Assertions raise a failure whose message says where (file:line of the spec) and shows the
-- expected and the actual value; `msg`, when given, comes first:
--   assert.equal(expected, actual, msg)      ==          assert.not_equal(expected, actual, msg)
--   assert.same(expected, actual, msg)       deep equality of tables (metatables ignored),
--                                            naming the first difference
--   assert.truthy(v, msg)  assert.falsy(v, msg)  assert.is_nil(v, msg)  assert.not_nil(v, msg)
--   assert.matches(pattern, s, msg)          a Lua pattern (string.find) matches s
--   assert.has_error(fn, pattern, msg)       fn() raises (an error whose text matches the Lua
--                                            pattern, when given); returns the error
-- assert.is and assert.are are assert itself, so Busted's assert.are.same(...) reads the same.
--
-- run_file(path, opts) runs one file and prints one line per test ("ok - name", "not ok - name:
-- message", "ok - name # pending"), with the lines the gateway's error log gained during a
-- failing test (every test with opts.verbose) below it. It returns passed, failed, pending.

local spec = {}

local MAX_SHOWN = 4000

---------------------------------------------------------------------------------- showing values

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }
    return named[c] or string.format("\\%03d", c:byte())
  end) .. '"'
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

local show

local function show_table(t, depth, seen)
  if seen[t] then return "<cycle>" end
  if depth > 6 then return "{...}" end
  seen[t] = true
  local parts, n = {}, #t
  for i = 1, n do parts[#parts + 1] = show(t[i], depth + 1, seen) end
  for _, k in ipairs(sorted_keys(t)) do
    local array_index = type(k) == "number" and k >= 1 and k <= n and k % 1 == 0
    if not array_index then
      local key = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k
                  or "[" .. show(k, depth + 1, seen) .. "]"
      parts[#parts + 1] = key .. " = " .. show(t[k], depth + 1, seen)
    end
  end
  seen[t] = nil
  return "{ " .. table.concat(parts, ", ") .. (#parts > 0 and " }" or "}")
end

show = function(v, depth, seen)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "table" then return show_table(v, depth or 0, seen or {}) end
  return tostring(v)
end

-- A value for a failure message: quoted strings, tables in full (up to MAX_SHOWN characters).
function spec.show(v)
  local s = show(v)
  if #s > MAX_SHOWN then s = s:sub(1, MAX_SHOWN) .. " ...(" .. (#s - MAX_SHOWN) .. " more)" end
  return s
end

-------------------------------------------------------------------------------------- failures

-- An assertion's failure: a table, so the runner can tell it from other errors (which get a
-- traceback with -v); tostring gives the message, so pcall users see text.
local Failure = { __tostring = function(f) return f.message end }

-- Raises a failure located at the spec line that called the assertion (`level` frames above the
-- assertion function: 1 when the spec calls it directly).
local function fail(message, msg, level)
  if msg ~= nil then message = tostring(msg) .. "\n" .. message end
  local info = debug.getinfo((level or 1) + 2, "Sl")
  local where = (info and info.currentline and info.currentline > 0)
                and (info.short_src .. ":" .. info.currentline .. ": ") or ""
  error(setmetatable({ message = where .. message }, Failure), 0)
end

local function expected_actual(expected, actual)
  return "expected: " .. spec.show(expected) .. "\n  actual: " .. spec.show(actual)
end

-- The path of the first difference between a and b and the two values there, or nil when a and b
-- are deeply equal.
local function first_difference(a, b, path, seen)
  if a == b then return nil end
  if type(a) ~= "table" or type(b) ~= "table" then return path, a, b end
  if seen[a] == b then return nil end
  seen[a] = b
  local function at(k)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then return path .. "." .. k end
    return path .. "[" .. show(k) .. "]"
  end
  for _, k in ipairs(sorted_keys(a)) do
    local where, va, vb = first_difference(a[k], b[k], at(k), seen)
    if where then return where, va, vb end
  end
  for _, k in ipairs(sorted_keys(b)) do
    if a[k] == nil then return at(k), nil, b[k] end
  end
  return nil
end

------------------------------------------------------------------------------------ assertions

local assertions = {}

function assertions.equal(expected, actual, msg)
  if expected ~= actual then
    local message = "values differ\n" .. expected_actual(expected, actual)
    if type(expected) ~= type(actual) then
      message = message .. "\n(types: " .. type(expected) .. " vs " .. type(actual) .. ")"
    end
    fail(message, msg)
  end
  return actual
end

function assertions.not_equal(unexpected, actual, msg)
  if unexpected == actual then fail("expected anything but: " .. spec.show(actual), msg) end
  return actual
end

function assertions.same(expected, actual, msg)
  local where, va, vb = first_difference(expected, actual, "", {})
  if where then
    local message = "values are not the same"
    if where ~= "" then
      message = message .. " (first difference at " .. where:gsub("^%.", "") .. ": "
                .. spec.show(va) .. " vs " .. spec.show(vb) .. ")"
    end
    fail(message .. "\n" .. expected_actual(expected, actual), msg)
  end
  return actual
end

function assertions.truthy(v, msg)
  if not v then fail("expected a truthy value, got: " .. spec.show(v), msg) end
  return v
end

function assertions.falsy(v, msg)
  if v then fail("expected a falsy value (nil or false), got: " .. spec.show(v), msg) end
  return v
end

function assertions.is_nil(v, msg)
  if v ~= nil then fail("expected nil, got: " .. spec.show(v), msg) end
end

function assertions.not_nil(v, msg)
  if v == nil then fail("expected a value, got nil", msg) end
  return v
end

function assertions.matches(pattern, s, msg)
  if type(s) ~= "string" and type(s) ~= "number" then
    fail("expected a string to match the pattern " .. quote(pattern) .. ", got: " .. spec.show(s),
         msg)
  end
  if not tostring(s):find(pattern) then
    fail("expected " .. spec.show(s) .. "\nto match the pattern " .. quote(pattern), msg)
  end
  return s
end

function assertions.has_error(fn, pattern, msg)
  if type(fn) ~= "function" then fail("has_error needs a function, got: " .. spec.show(fn), msg) end
  local ok, err = pcall(fn)
  if ok then
    fail("expected an error" .. (pattern and (" matching " .. quote(pattern)) or "")
         .. ", but the function returned", msg)
  end
  if pattern and not tostring(err):find(pattern) then
    fail("expected an error matching " .. quote(pattern) .. "\n     got: " .. tostring(err), msg)
  end
  return err
end

local function new_assert()
  local a = {}
  for name, f in pairs(assertions) do a[name] = f end
  a.is, a.are = a, a
  return setmetatable(a, {
    __call = function(_, v, msg, ...)
      if not v then fail(msg ~= nil and tostring(msg) or "assertion failed!") end
      return v, msg, ...
    end,
  })
end

------------------------------------------------------------------------------ collecting tests

local function new_block(name, parent)
  return { name = name, parent = parent, children = {}, before_each = {}, after_each = {},
           setup = {}, teardown = {} }
end

-- The environment a spec file runs in, and the tree it builds in `root`.
local function spec_env(root, state)
  local current = root
  local env = setmetatable({}, { __index = _G })

  local function check(what, name, fn, fn_optional)
    if state.running then error(what .. "() cannot be called inside a test", 3) end
    if type(name) ~= "string" then error(what .. "(name, fn): the name must be a string", 3) end
    if not (fn == nil and fn_optional) and type(fn) ~= "function" then
      error(what .. "(name, fn): fn must be a function", 3)
    end
  end

  function env.describe(name, fn)
    check("describe", name, fn)
    local block = new_block(name, current)
    current.children[#current.children + 1] = { block = block }
    local outer = current
    current = block
    fn()
    current = outer
  end

  function env.it(name, fn)
    check("it", name, fn, true)
    current.children[#current.children + 1] = { name = name, fn = fn, pending = fn == nil }
  end

  function env.pending(name)
    check("pending", name, nil, true)
    current.children[#current.children + 1] = { name = name, pending = true }
  end

  local function hook(kind)
    return function(fn)
      if state.running then error(kind .. "() cannot be called inside a test", 2) end
      if type(fn) ~= "function" then error(kind .. "(fn): fn must be a function", 2) end
      local list = current[kind]
      list[#list + 1] = fn
    end
  end
  env.before_each, env.after_each = hook("before_each"), hook("after_each")
  env.setup, env.teardown = hook("setup"), hook("teardown")
  env.lazy_setup, env.lazy_teardown = env.setup, env.teardown
  env.assert = new_assert()
  return env
end

--------------------------------------------------------------------------------------- running

local function error_text(verbose)
  return function(e)
    if getmetatable(e) == Failure then return e.message end
    local text = type(e) == "string" and e or ("error object: " .. spec.show(e))
    if verbose then
      -- the spec's frames only: the harness's own are the same for every test
      local lines = {}
      for line in debug.traceback(text, 2):gmatch("[^\n]+") do
        if not line:find("weir/spec.lua:", 1, true) and not line:find("in function 'xpcall'", 1, true) then
          lines[#lines + 1] = line
        end
      end
      text = table.concat(lines, "\n")
    end
    return text
  end
end

-- The error log's size now, to show what a test added to it.
local function log_size(path)
  local f = path and io.open(path, "rb")
  if not f then return 0 end
  local size = f:seek("end")
  f:close()
  return size
end

local function log_since(path, offset)
  local f = path and io.open(path, "rb")
  if not f then return "" end
  f:seek("set", offset)
  local text = f:read("*a") or ""
  f:close()
  return text
end

local function out(line)
  io.write(line, "\n")
  io.stdout:flush()
end

local function indented(text, prefix)
  return (text:gsub("\n$", ""):gsub("\n", "\n" .. prefix))
end

local Runner = {}
Runner.__index = Runner

function Runner:report(ok, name, message, log_from)
  if ok == "pending" then
    self.pending = self.pending + 1
    return out("ok - " .. name .. " # pending")
  end
  if ok then
    self.passed = self.passed + 1
    out("ok - " .. name)
  else
    self.failed = self.failed + 1
    out("not ok - " .. name .. ": " .. indented(message, "    "))
  end
  if log_from and (not ok or self.verbose) then
    local log = log_since(self.error_log, log_from)
    if log ~= "" then out("    error log:\n      " .. indented(log, "      ")) end
  end
end

function Runner:call(fn, what)
  local ok, err = xpcall(fn, error_text(self.verbose))
  if ok then return true end
  return false, what and (what .. ": " .. err) or err
end

local function full_name(block, name)
  local parts = { name }
  while block do
    if block.name then table.insert(parts, 1, block.name) end
    block = block.parent
  end
  return table.concat(parts, " ")
end

local function hooks_outward(block, kind, inward)
  local chain = {}
  while block do
    for i = #block[kind], 1, -1 do table.insert(chain, 1, block[kind][i]) end
    block = block.parent
  end
  if not inward then
    local reversed = {}
    for i = #chain, 1, -1 do reversed[#reversed + 1] = chain[i] end
    return reversed
  end
  return chain
end

function Runner:run_test(block, test, broken)
  local name = full_name(block, test.name)
  if test.pending then return self:report("pending", name) end
  if broken then return self:report(false, name, broken) end
  local log_from = log_size(self.error_log)
  self.state.running = true
  local ok, err = true, nil
  for _, h in ipairs(hooks_outward(block, "before_each", true)) do
    ok, err = self:call(h, "before_each")
    if not ok then break end
  end
  if ok then ok, err = self:call(test.fn) end
  for _, h in ipairs(hooks_outward(block, "after_each", false)) do
    local hook_ok, hook_err = self:call(h, "after_each")
    if ok and not hook_ok then ok, err = false, hook_err end
  end
  self.state.running = false
  self:report(ok, name, err, log_from)
end

-- `broken`: why every test of the block fails without running (a failed setup of a parent).
function Runner:run_block(block, broken)
  if not broken then
    self.state.running = true
    for _, h in ipairs(block.setup) do
      local ok, err = self:call(h, "setup")
      if not ok then broken = err; break end
    end
    self.state.running = false
  end
  for _, child in ipairs(block.children) do
    if child.block then
      self:run_block(child.block, broken)
    else
      self:run_test(block, child, broken)
    end
  end
  for _, h in ipairs(block.teardown) do
    local log_from = log_size(self.error_log)
    local ok, err = self:call(h, "teardown")
    if not ok then self:report(false, full_name(block, "(teardown)"), err, log_from) end
  end
end

-- opts: name (how the file is reported), verbose, error_log (a path), before (a function run
-- before the file loads; its error fails the file).
function spec.run_file(path, opts)
  local runner = setmetatable({ passed = 0, failed = 0, pending = 0, verbose = opts.verbose,
                                error_log = opts.error_log, state = { running = false } }, Runner)
  local name = opts.name or path
  out("# " .. name)
  local log_from = log_size(runner.error_log)
  local root = new_block(nil, nil)
  local ok, err = true, nil
  if opts.before then ok, err = runner:call(opts.before, "before the file") end
  if ok then
    local chunk, load_err
    local f, open_err = io.open(path, "rb")
    if f then
      -- named as reported ("spec/x_spec.lua"), so failures point at spec/x_spec.lua:12
      chunk, load_err = loadstring(f:read("*a"), "@" .. name)
      f:close()
    else
      load_err = open_err
    end
    if not chunk then
      ok, err = false, load_err
    else
      setfenv(chunk, spec_env(root, runner.state))
      ok, err = runner:call(chunk)
    end
  end
  if not ok then
    runner:report(false, name, err, log_from)
    return runner.passed, runner.failed, runner.pending
  end
  runner:run_block(root, nil)
  return runner.passed, runner.failed, runner.pending
end

return spec
