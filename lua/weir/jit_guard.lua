-- jit_guard: which Lua LuaJIT may compile when plugin calls have an instruction budget.
--
-- The budget is enforced by a count hook, and LuaJIT runs no hooks inside compiled code, so code
-- the budget must be able to stop has to run interpreted. That is every plugin's code from
-- weir.plugin_paths and anything loaded at run time; Weir's own Lua (the runtime and the bundled
-- plugins, under the data directory's lua/ and plugins/) has no unbounded loops and runs
-- compiled. Installed once per VM by lua_vm.c, with those trusted directories; returns the
-- function that marks a chunk, and every function defined in it, for the interpreter
-- (jit.off(f, true)). It guards against mistakes, not against hostile code (which could turn
-- the JIT back on).

return function(...)
  local trusted = { ... } -- directory prefixes, each ending in "/"
  local off, type, sub, format = jit.off, type, string.sub, string.format

  local function interpret(f)
    if type(f) == "function" then off(f, true) end
    return f
  end

  local function is_trusted(path)
    for i = 1, #trusted do
      local d = trusted[i]
      if sub(path, 1, #d) == d then return true end
    end
    return false
  end

  -- Code made at run time is never Weir's own.
  local load0, loadstring0, loadfile0 = load, loadstring, loadfile
  load = function(...)
    local f, err = load0(...)
    return interpret(f), err
  end
  loadstring = function(...)
    local f, err = loadstring0(...)
    return interpret(f), err
  end
  loadfile = function(...)
    local f, err = loadfile0(...)
    return interpret(f), err
  end
  dofile = function(name)
    local f, err = loadfile(name)
    if not f then error(err, 2) end
    return f()
  end

  -- require's Lua file searcher: modules from outside the trusted directories run interpreted.
  local searchpath = package.searchpath
  package.loaders[2] = function(name)
    local path, err = searchpath(name, package.path)
    if not path then return err end
    local f, lerr = loadfile0(path)
    if not f then
      error(format("error loading module '%s' from file '%s':\n\t%s", name, path, lerr), 0)
    end
    if not is_trusted(path) then off(f, true) end
    return f
  end

  return interpret
end
