-- Regressions: each test is a bug that was found and fixed.
local H = require "helper"
local ws, uv = H.ws, H.uv

local env = 'LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" '

describe("regressions", function()
  it("an application queue above max_queued_bytes is not cut off when a frame arrives", function()
    local t = H.new()
    t:pair({}, function(c, s)
      local chunk = ("x"):rep(6 * 1024 * 1024)
      for _ = 1, 3 do c:write(chunk, "binary", t:cb(function() end)) end -- 18 MiB, each write legal
      assert.is_true(c:buffered_amount() > c:get_option("max_queued_bytes"))
      s:write("hi", t:cb(function() end))
      c:read(t:cb(function(err, data)
        assert.is_nil(err)
        assert.equal("hi", data)
        assert.is_true(c:is_open())
        t:done()
      end))
    end)
    t:run(10)
  end)

  it("server:close() inside a coroutine with no connections returns", function()
    local t = H.new()
    local srv = assert(ws.server({ port = 0 }))
    t:co(function()
      srv:close()
      srv:close() -- twice is harmless
      t:done()
    end)
    t:run()
  end)

  it("ws.server answers a head over max_header_bytes with 431 and a malformed one with 400", function()
    local t = H.new()
    local srv = assert(ws.server({ port = 0, on_connection = function() end }))
    local got = {}
    for i, bytes in ipairs({
      "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " .. ("b"):rep(9000) .. "\r\n\r\n",
      "GET / HTTP/1.1\r\nHost h\r\n\r\n",
    }) do
      t:connect(srv.port, function(tcp)
        local r = t:raw(tcp)
        r.on_eof = function() got[i] = r.data end
        r:write(bytes)
      end)
    end
    t:when(function() return got[1] and got[2] end, function()
      assert.truthy(got[1]:match("^HTTP/1%.1 431 "), got[1])
      assert.truthy(got[2]:match("^HTTP/1%.1 400 "), got[2])
      srv:close(0, function() t:done() end)
    end)
    t:run()
  end)

  it("a server decorator that breaks Upgrade or Connection on a 101 fails the accept (bad_decorator)", function()
    for _, edit in ipairs({
      function(res) res.headers["Upgrade"] = nil end,
      function(res) res.headers["Connection"] = "keep-alive" end,
      function(res) res.headers:add("Sec-WebSocket-Accept", "x") end,
    }) do
      local t = H.new()
      local server_err
      local _, port = t:ws_server({ want_errors = true, decorator = edit }, function(_, err) server_err = err end)
      t:ws_client(port, { want_errors = true }, function(_, res, err)
        assert.equal("upgrade_declined", err)
        assert.equal(500, res.status)
        t:when(function() return server_err end, function()
          assert.equal("bad_decorator", server_err)
          t:done()
        end)
      end)
      t:run()
    end
  end)

  it("close() after a read got closed is operation_aborted, every time", function()
    for _ = 1, 5 do
      local t = H.new()
      t:pair({}, function(c, s)
        c:read(t:cb(function(err)
          assert.equal("closed", err)
          c:close(1000, "late", t:cb(function(e)
            assert.equal("operation_aborted", e)
            t:done()
          end))
        end))
        s:close(1000, "bye", t:cb(function() end))
      end)
      t:run()
    end
  end)

  it("close() on a stream that never opened closes its handle; exiting with such streams does not crash", function()
    local t = H.new()
    local _, port = t:listen(function() end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp)
      s:close(t:cb(function(err)
        assert.equal("operation_aborted", err)
        assert.is_true(tcp:is_closing())
        t:done()
      end))
    end)
    t:run()
    -- A script that leaves streams (new, open, closing) behind at exit.
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write([[
local uv = require "luv"
local ws = require "luvws"
local l = uv.new_tcp(); l:bind("127.0.0.1", 0)
l:listen(8, function() local c = uv.new_tcp(); l:accept(c); ws.stream(c):accept(function() end) end)
local keep = {}
for i = 1, 3 do
  local tcp = uv.new_tcp()
  tcp:connect("127.0.0.1", l:getsockname().port, function()
    local s = ws.stream(tcp)
    keep[i] = s
    if i == 1 then s:close(function() end) end
    if i == 2 then s:handshake("h", "/", function() end) end
    if i == 3 then s:handshake("h", "/", function() s:close(1000, "x", function() end) end) end
  end)
end
local t = uv.new_timer()
t:start(100, 0, function() t:close(); l:close(); uv.stop() end)
uv.run()
print("exiting")
]])
    f:close()
    local p = io.popen(env .. "lua5.4 " .. script .. " 2>&1; echo rc=$?")
    local out = p:read("a")
    p:close()
    os.remove(script)
    assert.truthy(out:find("exiting", 1, true), out)
    assert.truthy(out:find("rc=0", 1, true), out)
  end)
end)
