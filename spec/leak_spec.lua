-- Memory: 10,000 connect / handshake / echo / close cycles leave Lua memory
-- and RSS flat; valgrind finds no leak and no error on short runs of the
-- success and failure paths.
local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

local env = 'LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" '

describe("memory #memory", function()
  it("stays flat over 10,000 cycles (Lua heap within 64 KiB, RSS within 2 MiB after warm-up)", function()
    local out, code = run(env .. "lua5.4 spec/scripts/cycles.lua 10000 16")
    assert.equal(0, code, out)
    assert.truthy(out:find("failures 0", 1, true), out)
    local marks = {}
    for n, lua, rss in out:gmatch("mark (%d+) (%d+) (%d+)") do
      marks[#marks + 1] = { n = tonumber(n), lua = tonumber(lua), rss = tonumber(rss) }
    end
    assert.equal(10, #marks)
    local first, last = marks[1], marks[#marks]
    assert.equal(10000, last.n)
    assert.is_true(last.lua - first.lua < 64, ("Lua heap grew from %d to %d KiB"):format(first.lua, last.lua))
    assert.is_true(last.rss - first.rss < 2048, ("RSS grew from %d to %d KiB"):format(first.rss, last.rss))
  end)

  local valgrind = "valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible " ..
    "--errors-for-leak-kinds=definite,indirect,possible --error-exitcode=9 "

  it("valgrind: no leak and no error over 200 cycles", function()
    local out, code = run(env .. valgrind .. "lua5.4 spec/scripts/cycles.lua 200 4")
    assert.equal(0, code, out)
    assert.truthy(out:find("ERROR SUMMARY: 0 errors", 1, true), out)
    assert.truthy(out:find("All heap blocks were freed", 1, true) or out:find("definitely lost: 0 bytes", 1, true), out)
  end)

  it("valgrind: no leak and no error on the failure paths", function()
    local out, code = run(env .. "timeout 120 " .. valgrind .. "lua5.4 spec/scripts/abuse.lua")
    assert.equal(0, code, out)
    assert.truthy(out:find("done", 1, true), out)
    assert.truthy(out:find("ERROR SUMMARY: 0 errors", 1, true), out)
  end)
end)
