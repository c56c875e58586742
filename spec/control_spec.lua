-- ping, pong, control_callback, close, and the protocol errors a peer can
-- cause (each with its name and close code).
local H = require "helper"
local ws = H.ws

describe("ping and pong", function()
  it("a ping is answered even when no read is pending; control_callback sees both ends", function()
    local t = H.new()
    t:pair({}, function(c, s)
      local server_saw, client_saw = {}, {}
      s:control_callback(t:cb(function(kind, payload) server_saw[#server_saw + 1] = kind .. ":" .. payload end))
      c:control_callback(t:cb(function(kind, payload) client_saw[#client_saw + 1] = kind .. ":" .. payload end))
      -- Nobody reads on either side.
      c:ping("are you there", t:cb(function(err) assert.is_nil(err) end))
      t:when(function() return #client_saw == 1 end, function()
        assert.same({ "pong:are you there" }, client_saw)
        assert.same({ "ping:are you there" }, server_saw)
        t:done()
      end)
    end)
    t:run()
  end)

  it("an unsolicited pong reaches the peer's control_callback", function()
    local t = H.new()
    t:pair({}, function(c, s)
      s:control_callback(t:cb(function(kind, payload)
        assert.equal("pong", kind)
        assert.equal("heartbeat", payload)
        t:done()
      end))
      c:pong("heartbeat", t:cb(function(err) assert.is_nil(err) end))
    end)
    t:run()
  end)

  it("a ping between two fragments of a message gets its pong and the message stays whole", function()
    local t = H.new()
    local raw
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp)
      s:accept(t:cb(function(err)
        assert.is_nil(err)
        s:read(t:cb(function(err2, data)
          assert.is_nil(err2)
          assert.equal("hello", data)
          t:when(function()
            for _, f in ipairs(raw:frames(true)) do
              if f.opcode == 0xA then return f.payload == "pp" end
            end
          end, function() t:done() end)
        end))
      end))
    end)
    t:connect(port, function(tcp)
      raw = t:raw(tcp)
      raw:write(H.upgrade_request(port))
      raw:write(H.frame({ fin = false, opcode = 1, payload = "hel", mask = "abcd" }))
      raw:write(H.frame({ opcode = 9, payload = "pp", mask = "efgh" }))
      raw:write(H.frame({ opcode = 0, payload = "lo", mask = "ijkl" }))
    end)
    t:run()
  end)

  it("payloads over 125 bytes are refused at once", function()
    local t = H.new()
    t:pair({}, function(c)
      assert.has_error(function() c:ping(("x"):rep(126), function() end) end)
      assert.has_error(function() c:pong(("x"):rep(200), function() end) end)
      t:done()
    end)
    t:run()
  end)
end)

describe("close", function()
  it("sends code and reason; the peer's read gets closed and reason() gives them; close completes", function()
    local t = H.new()
    t:pair({}, function(c, s)
      local read_err
      s:read(t:cb(function(err)
        read_err = err
        local code, reason = s:reason()
        assert.equal(4001, code)
        assert.equal("game over", reason)
        assert.is_false(s:is_open())
      end))
      local returned = false
      c:close(4001, "game over", t:cb(function(err)
        assert.is_true(returned)
        assert.is_nil(err)
        -- Beast echoes the code without the reason.
        local code, reason = c:reason()
        assert.equal(4001, code)
        assert.equal("", reason)
        assert.is_false(c:is_open())
        t:when(function() return read_err end, function()
          assert.equal("closed", read_err)
          t:done()
        end)
      end))
      returned = true
    end)
    t:run()
  end)

  it("writes queued before close go out before the close frame", function()
    local t = H.new()
    t:pair({}, function(c, s)
      local got = {}
      local function loop()
        s:read(t:cb(function(err, data)
          if err then
            assert.equal("closed", err)
            assert.same({ "a", "b", "c" }, got)
            t:done()
            return
          end
          got[#got + 1] = data
          loop()
        end))
      end
      loop()
      for _, m in ipairs({ "a", "b", "c" }) do c:write(m, t:cb(function(err) assert.is_nil(err) end)) end
      c:close(1000, "done", t:cb(function(err) assert.is_nil(err) end))
    end)
    t:run()
  end)

  it("after close, writes and pings get operation_aborted and a second close operation_in_progress", function()
    local t = H.new()
    t:pair({}, function(c)
      local results = {}
      c:close(1000, nil, t:cb(function(err) results.close = err or "ok" end))
      c:write("late", t:cb(function(err) results.write = err end))
      c:ping("late", t:cb(function(err) results.ping = err end))
      c:close(1000, t:cb(function(err) results.close2 = err end))
      t:when(function() return results.close and results.write and results.ping and results.close2 end, function()
        assert.equal("ok", results.close)
        assert.equal("operation_aborted", results.write)
        assert.equal("operation_aborted", results.ping)
        assert.equal("operation_in_progress", results.close2)
        t:done()
      end)
    end)
    t:run()
  end)

  it("rejects close codes that are not valid on the wire", function()
    local t = H.new()
    t:pair({}, function(c)
      for _, code in ipairs({ 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000 }) do
        assert.has_error(function() c:close(code, "x", function() end) end)
      end
      assert.has_error(function() c:close(1000, ("r"):rep(124), function() end) end)
      assert.has_error(function() c:close(1000, "\255", function() end) end)
      t:done()
    end)
    t:run()
  end)

  it("a close gets timeout when the peer never answers it (timeout.close)", function()
    local t = H.new()
    local _, port = t:raw_server(function() end) -- answers the upgrade, then ignores everything
    t:connect(port, function(tcp)
      local s = ws.stream(tcp, { timeout = { close = 0.2 } })
      s:handshake("h", "/", t:cb(function(err)
        assert.is_nil(err)
        local started = H.uv.now()
        s:close(1000, "bye", t:cb(function(err2)
          assert.equal("timeout", err2)
          local took = H.uv.now() - started
          assert.is_true(took >= 180 and took < 2000, "took " .. took .. " ms")
          assert.is_true(tcp:is_closing())
          t:done()
        end))
      end))
    end)
    t:run()
  end)

  it("an empty close is answered with 1000 and reason() is 1005-free (code 0)", function()
    local t = H.new()
    local raw
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp)
      s:accept(t:cb(function(err)
        assert.is_nil(err)
        s:read(t:cb(function(err2)
          assert.equal("closed", err2)
          assert.equal(0, (s:reason()))
          t:when(function()
            for _, f in ipairs(raw:frames(true)) do
              if f.opcode == 8 then return f.payload == "\3\232" end
            end
          end, function() t:done() end)
        end))
      end))
    end)
    t:connect(port, function(tcp)
      raw = t:raw(tcp)
      raw:write(H.upgrade_request(port))
      raw:write(H.frame({ opcode = 8, payload = "", mask = "abcd" }))
    end)
    t:run()
  end)
end)

describe("protocol errors", function()
  -- {name, close code, frame bytes the raw peer sends, role of luvws}
  local M = "abcd"
  local cases = {
    { "bad_opcode", 1002, H.frame({ opcode = 3, mask = M }) },
    { "bad_opcode", 1002, H.frame({ opcode = 0xB, mask = M }) },
    { "bad_data_frame", 1002, H.frame({ fin = false, opcode = 1, payload = "a", mask = M }) .. H.frame({ opcode = 1, payload = "b", mask = M }) },
    { "bad_continuation", 1002, H.frame({ opcode = 0, payload = "a", mask = M }) },
    { "bad_reserved_bits", 1002, H.frame({ rsv = 2, opcode = 1, payload = "a", mask = M }) },
    { "bad_reserved_bits", 1002, H.frame({ rsv = 4, opcode = 2, payload = "a", mask = M }) },
    { "bad_control_fragment", 1002, H.frame({ fin = false, opcode = 9, mask = M }) },
    { "bad_control_size", 1002, H.frame({ opcode = 9, payload = ("p"):rep(126), mask = M }) },
    { "bad_unmasked_frame", 1002, H.frame({ opcode = 1, payload = "nomask" }) },
    { "bad_size", 1002, H.frame({ opcode = 2, payload = "short", len16 = true, mask = M }) },
    { "bad_size", 1002, H.frame({ opcode = 2, payload = "short", len64 = true, mask = M }) },
    { "bad_frame_payload", 1007, H.frame({ opcode = 1, payload = "ok\192\128", mask = M }) },
    { "bad_frame_payload", 1007, H.frame({ opcode = 1, payload = "\237\160\128", mask = M }) },
    { "bad_frame_payload", 1007, H.frame({ fin = false, opcode = 1, payload = "\226\130", mask = M }) .. H.frame({ opcode = 0, payload = "", mask = M }) },
    { "bad_close_size", 1002, H.frame({ opcode = 8, payload = "\3", mask = M }) },
    { "bad_close_code", 1002, H.frame({ opcode = 8, payload = "\3\237", mask = M }) },   -- 1005
    { "bad_close_code", 1002, H.frame({ opcode = 8, payload = "\19\136", mask = M }) },  -- 5000
    { "bad_close_payload", 1002, H.frame({ opcode = 8, payload = "\3\232\255", mask = M }) },
    { "message_too_big", 1009, H.frame({ opcode = 2, payload = ("x"):rep(2000), mask = M }), { read_message_max = 1000 } },
    { "message_too_big", 1009, H.frame({ fin = false, opcode = 2, payload = ("x"):rep(600), mask = M }) ..
      H.frame({ opcode = 0, payload = ("x"):rep(600), mask = M }), { read_message_max = 1000 } },
  }
  for _, case in ipairs(cases) do
    local name, code, bytes, options = case[1], case[2], case[3], case[4]
    it(("the server reports %s and closes with %d"):format(name, code), function()
      local t = H.new()
      local raw, read_err
      local _, port = t:listen(function(tcp)
        local s = ws.stream(tcp, options)
        s:accept(t:cb(function(err)
          assert.is_nil(err)
          s:read(t:cb(function(err2)
            read_err = err2
            assert.is_false(s:is_open())
          end))
        end))
      end)
      t:connect(port, function(tcp)
        raw = t:raw(tcp)
        raw:write(H.upgrade_request(port) .. bytes)
        raw.on_eof = function()
          local close
          for _, f in ipairs(raw:frames(true)) do
            if f.opcode == 8 then close = f end
          end
          assert.truthy(close, "no close frame before EOF")
          assert.equal(code, (H.close_payload(close.payload)))
          t:when(function() return read_err end, function()
            assert.equal(name, read_err)
            assert.equal("protocol_violation", ws.condition(name) or (name == "message_too_big" and "protocol_violation"))
            t:done()
          end)
        end
      end)
      t:run()
    end)
  end

  it("the client reports bad_masked_frame (a masked server frame) and closes with 1002", function()
    local t = H.new()
    local raw
    local _, port = t:raw_server(function(r)
      raw = r
      r:write(H.frame({ opcode = 1, payload = "masked", mask = "wxyz" }))
    end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp)
      s:handshake("h", "/", t:cb(function(err)
        assert.is_nil(err)
        s:read(t:cb(function(err2)
          assert.equal("bad_masked_frame", err2)
          t:when(function()
            for _, f in ipairs(raw:frames()) do
              if f.opcode == 8 then return (H.close_payload(f.payload)) == 1002 end
            end
          end, function() t:done() end)
        end))
      end))
    end)
    t:run()
  end)

  it("message_too_big is reported at the frame header, before the payload arrives", function()
    local t = H.new()
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp, { read_message_max = 1024 })
      s:accept(t:cb(function()
        s:read(t:cb(function(err)
          assert.equal("message_too_big", err)
          t:done()
        end))
      end))
    end)
    t:connect(port, function(tcp)
      local r = t:raw(tcp)
      -- Only the header of a 1 GiB frame: no payload ever follows.
      r:write(H.upgrade_request(port) .. H.frame({ opcode = 2, len = 1 << 30, mask = "abcd" }):sub(1, 14))
    end)
    t:run()
  end)

  it("a peer that drops TCP without a close frame gives EOF", function()
    local t = H.new()
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp)
      s:accept(t:cb(function()
        s:read(t:cb(function(err)
          assert.equal("EOF", err)
          assert.equal(0, (s:reason()))
          t:done()
        end))
      end))
    end)
    t:connect(port, function(tcp)
      local r = t:raw(tcp)
      r:write(H.upgrade_request(port))
      t:after(50, function() tcp:shutdown() end)
    end)
    t:run()
  end)
end)
