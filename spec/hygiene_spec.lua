-- Process hygiene (DESIGN.md): SIGPIPE and one libuv per process.
local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  return out
end

local env = 'LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" '

describe("process hygiene", function()
  it("after loading luvws, a write to a reset peer is an error, not a dead process (SIGPIPE)", function()
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write([[
local uv = require "luv"
require "luvws"
local l = uv.new_tcp(); l:bind("127.0.0.1", 0)
l:listen(1, function() local c = uv.new_tcp(); l:accept(c); c:close() end)
local t = uv.new_tcp()
local errors = {}
t:connect("127.0.0.1", l:getsockname().port, function()
  local timer = uv.new_timer()
  local n = 0
  timer:start(50, 10, function()
    n = n + 1
    t:write(("x"):rep(65536), function(err) if err then errors[err] = true end end)
    if n == 20 then timer:close(); t:close(); l:close() end
  end)
end)
uv.run()
local names = {}
for k in pairs(errors) do names[#names + 1] = k end
table.sort(names)
print("alive", table.concat(names, ","))
]])
    f:close()
    local out = run(env .. "lua5.4 " .. script)
    os.remove(script)
    assert.truthy(out:find("alive", 1, true), out)
    assert.truthy(out:find("EPIPE", 1, true) or out:find("ECONNRESET", 1, true), out)
    assert.truthy(out:find("rc=0", 1, true), out)
  end)

  it("refuses to load next to a luv that runs its own copy of libuv, and says so", function()
    -- A stand-in for a luv built with a bundled libuv: a module "luv" whose
    -- functions live in a library that is not linked with the system libuv.
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local src = io.open(dir .. "/fakeluv.c", "w")
    src:write([[
#include <lua.h>
#include <lauxlib.h>
static int version(lua_State *L) { lua_pushinteger(L, 1); return 1; }
int luaopen_luv(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, version);
  lua_setfield(L, -2, "version");
  return 1;
}
]])
    src:close()
    local built = run("cc -shared -fPIC -isystem /usr/include/lua5.4 -o " .. dir .. "/luv.so " .. dir .. "/fakeluv.c")
    assert.truthy(built:find("rc=0", 1, true), built)
    local out = run('LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="' .. dir .. '/?.so;build/?.so;;" ' ..
      "lua5.4 -e 'require \"luvws\"'")
    os.execute("rm -rf " .. dir)
    assert.truthy(out:find("bundled copy of libuv", 1, true), out)
    assert.falsy(out:find("rc=0", 1, true), out)
  end)
end)
