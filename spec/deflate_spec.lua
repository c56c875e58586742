-- permessage-deflate (RFC 7692): negotiation, every parameter combination
-- between our client and server, the per-write override, thresholds, the
-- inflated-size limit (bombs), bad and truncated compressed data.
local H = require "helper"
local ws, uv = H.ws, H.uv

local function text(n)
  local words = { "alpha", "beta", "gamma", "delta", "player", "score", "{\"x\":", "12,", "\"y\":", "7}" }
  local out, i = {}, 0
  while #out < n do
    i = i + 1
    out[#out + 1] = words[(i * 7) % #words + 1]
    out[#out + 1] = " "
  end
  return table.concat(out):sub(1, n)
end

-- A raw server that completes the upgrade with the given extension answer
-- and lets the test write frames by hand.
local function raw_pmd_server(t, answer, on_open)
  return t:raw_server(on_open, answer and ("Sec-WebSocket-Extensions: " .. answer .. "\r\n") or nil)
end

describe("permessage-deflate negotiation", function()
  it("is off unless both sides enable it; get_status reports what was agreed", function()
    local t = H.new()
    t:pair({ client = { permessage_deflate = { client_enable = true } } }, function(c, s)
      assert.is_false(c:get_status().permessage_deflate)
      assert.is_false(s:get_status().permessage_deflate)
      t:done()
    end)
    t:run()
    t = H.new()
    t:pair({ client = { permessage_deflate = { client_enable = true } },
             server = { permessage_deflate = { server_enable = true } } }, function(c, s)
      local cs, ss = c:get_status().permessage_deflate, s:get_status().permessage_deflate
      assert.is_table(cs)
      assert.same(cs, ss)
      assert.equal(15, cs.server_max_window_bits)
      assert.equal(15, cs.client_max_window_bits)
      assert.is_false(cs.server_no_context_takeover)
      assert.is_false(cs.client_no_context_takeover)
      t:done()
    end)
    t:run()
  end)

  it("offers Beast's extension string", function()
    local t = H.new()
    local _, port = t:listen(function(tcp)
      local r = t:raw(tcp)
      r.on_data = function()
        if r.data:find("\r\n\r\n", 1, true) then
          assert.truthy(r.data:find("\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=15; client_max_window_bits=15\r\n", 1, true), r.data)
          t:done()
        end
      end
    end)
    t:connect(port, function(tcp)
      ws.stream(tcp, { permessage_deflate = { client_enable = true } }):handshake("h", "/", function() end)
    end)
    t:run()
  end)

  it("the client refuses an answer it did not offer or cannot honour (bad_extension)", function()
    for _, answer in ipairs({
      "permessage-deflate; server_max_window_bits=15; foo=1",
      "permessage-deflate; client_max_window_bits=16",
      "x-webkit-deflate-frame",
      "permessage-deflate, permessage-deflate",
    }) do
      local t = H.new()
      local _, port = raw_pmd_server(t, answer, function() end)
      t:connect(port, function(tcp)
        local s = ws.stream(tcp, { permessage_deflate = { client_enable = true, client_max_window_bits = 10 } })
        s:handshake("h", "/", t:cb(function(err)
          assert.equal("bad_extension", err, answer)
          t:done()
        end))
      end)
      t:run()
    end
  end)

  it("the server declines bad offers and goes on uncompressed", function()
    local t = H.new()
    local _, port = t:ws_server({ options = { permessage_deflate = { server_enable = true } } }, function(s)
      assert.is_false(s:get_status().permessage_deflate)
      t:done()
    end)
    t:connect(port, function(tcp)
      local r = t:raw(tcp)
      r:write(H.upgrade_request(port, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99; bogus\r\n"))
    end)
    t:run()
  end)
end)

describe("compressed messages", function()
  local combos = {}
  for _, sbits in ipairs({ 9, 12, 15 }) do
    for _, cbits in ipairs({ 9, 15 }) do
      for _, snct in ipairs({ false, true }) do
        for _, cnct in ipairs({ false, true }) do
          combos[#combos + 1] = { sbits, cbits, snct, cnct }
        end
      end
    end
  end
  for _, c in ipairs(combos) do
    local sbits, cbits, snct, cnct = c[1], c[2], c[3], c[4]
    it(("window bits %d/%d, no_context_takeover server=%s client=%s: messages both ways"):format(
      sbits, cbits, tostring(snct), tostring(cnct)), function()
      local t = H.new()
      local pmd = { server_max_window_bits = sbits, client_max_window_bits = cbits,
                    server_no_context_takeover = snct, client_no_context_takeover = cnct }
      local cp, sp = { client_enable = true }, { server_enable = true }
      for k, v in pairs(pmd) do cp[k] = v; sp[k] = v end
      t:pair({ client = { permessage_deflate = cp }, server = { permessage_deflate = sp } }, function(cl, sv)
        local st = cl:get_status().permessage_deflate
        assert.is_table(st)
        assert.equal(sbits, st.server_max_window_bits)
        assert.equal(cbits, st.client_max_window_bits)
        local msgs = { "", "a", text(100), text(5000), text(70000), ("\0\1\2\255"):rep(3000) }
        local function echo()
          sv:read(t:cb(function(err, data, is_text)
            if err then return end
            sv:write(data, is_text and "text" or "binary", function() end)
            echo()
          end))
        end
        echo()
        local i = 0
        local function nxt()
          i = i + 1
          if i > #msgs * 2 then return t:done() end
          local m = msgs[(i - 1) % #msgs + 1]
          local kind = m:find("\255", 1, true) and "binary" or "text"
          cl:write(m, kind, t:cb(function(err) assert.is_nil(err) end))
          cl:read(t:cb(function(err, data, is_text)
            assert.is_nil(err)
            assert.equal(kind == "text", is_text)
            assert.equal(#m, #data)
            assert.is_true(m == data)
            nxt()
          end))
        end
        nxt()
      end)
      t:run(10)
    end)
  end

  it("compresses on the wire (RSV1 on the first frame only) and honours the per-write override and the threshold", function()
    local t = H.new()
    local raw
    local _, port = raw_pmd_server(t, "permessage-deflate", function(r) raw = r end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp, { permessage_deflate = { client_enable = true, msg_size_threshold = 64 }, write_buffer_bytes = 1024 })
      s:handshake("h", "/", t:cb(function(err)
        assert.is_nil(err)
        s:write(text(20000), t:cb(function() end))                       -- compressed
        s:write(text(20000), { compress = false }, t:cb(function() end)) -- not
        s:write(text(20), t:cb(function() end))                          -- below the threshold
        s:set_option("compress", false)
        s:write(text(20000), t:cb(function() end))                       -- option off
      end))
    end)
    t:when(function()
      if not raw then return false end
      local fins = 0
      for _, f in ipairs(raw:frames()) do if f.fin then fins = fins + 1 end end
      return fins == 4
    end, function()
      local msgs, cur = {}, nil
      for _, f in ipairs(raw:frames()) do
        if f.opcode ~= 0 then
          cur = { rsv1 = (f.rsv & 4) ~= 0, len = 0, frames = 0 }
          msgs[#msgs + 1] = cur
        else
          assert.equal(0, f.rsv & 4) -- never RSV1 on a continuation
        end
        cur.len = cur.len + #f.payload
        cur.frames = cur.frames + 1
      end
      assert.equal(4, #msgs)
      assert.is_true(msgs[1].rsv1)
      assert.is_true(msgs[1].len < 20000 / 4, "not compressed: " .. msgs[1].len)
      assert.is_false(msgs[2].rsv1)
      assert.equal(20000, msgs[2].len)
      assert.is_false(msgs[3].rsv1)
      assert.is_false(msgs[4].rsv1)
      t:done()
    end)
    t:run()
  end)

  it("a compression bomb stops at read_message_max with message_too_big and 1009", function()
    local t = H.new()
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp, { read_message_max = 64 * 1024, permessage_deflate = { server_enable = true } })
      s:accept(t:cb(function(err)
        assert.is_nil(err)
        s:read(t:cb(function(e)
          assert.equal("message_too_big", e)
          t:done()
        end))
      end))
    end)
    -- A client with no limit sends 16 MiB of zeros compressed (~16 KiB).
    t:connect(port, function(tcp)
      local c = ws.stream(tcp, { permessage_deflate = { client_enable = true } })
      c:handshake("h", "/", t:cb(function(err)
        assert.is_nil(err)
        c:write(("\0"):rep(16 * 1024 * 1024), "binary", t:cb(function() end))
        c:read(t:cb(function(e)
          assert.equal("closed", e)
          assert.equal(1009, (c:reason()))
        end))
      end))
    end)
    t:run(10)
  end)

  it("bad compressed data fails with bad_compressed_data and 1007", function()
    local t = H.new()
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp, { permessage_deflate = { server_enable = true } })
      s:accept(t:cb(function()
        s:read(t:cb(function(e)
          assert.equal("bad_compressed_data", e)
          t:done()
        end))
      end))
    end)
    t:connect(port, function(tcp)
      local r = t:raw(tcp)
      r:write(H.upgrade_request(port, "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
      -- RSV1 text frame whose payload is not deflate data (BTYPE 11).
      r:write(H.frame({ rsv = 4, opcode = 1, payload = "\255\255\255\255", mask = "abcd" }))
    end)
    t:run()
  end)

  it("RSV1 on a connection without compression is bad_reserved_bits", function()
    local t = H.new()
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp)
      s:accept(t:cb(function()
        s:read(t:cb(function(e)
          assert.equal("bad_reserved_bits", e)
          t:done()
        end))
      end))
    end)
    t:connect(port, function(tcp)
      local r = t:raw(tcp)
      r:write(H.upgrade_request(port) .. H.frame({ rsv = 4, opcode = 1, payload = "\242\72\205\201\201\7\0", mask = "abcd" }))
    end)
    t:run()
  end)

  it("decodes RFC 7692's example frames, a BFINAL block, and a truncated stream", function()
    local t = H.new()
    local got = {}
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp, { permessage_deflate = { server_enable = true } })
      s:accept(t:cb(function()
        local function loop()
          s:read(t:cb(function(e, data)
            if e then got.err = e return end
            got[#got + 1] = data
            loop()
          end))
        end
        loop()
      end))
    end)
    t:connect(port, function(tcp)
      local r = t:raw(tcp)
      r:write(H.upgrade_request(port, "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
      local M = "abcd"
      -- "Hello" (7.2.3.1), then the same with context takeover (7.2.3.2).
      r:write(H.frame({ rsv = 4, opcode = 1, payload = "\242\72\205\201\201\7\0", mask = M }))
      r:write(H.frame({ rsv = 4, opcode = 1, payload = "\242\0\17\0\0", mask = M }))
      -- Fragmented (7.2.3.5): "Hel" "lo" split across two frames.
      r:write(H.frame({ fin = false, rsv = 4, opcode = 1, payload = "\242\72\205", mask = M }))
      r:write(H.frame({ opcode = 0, payload = "\201\201\7\0", mask = M }))
      -- A stored (uncompressed) block (7.2.3.3).
      r:write(H.frame({ rsv = 4, opcode = 1, payload = "\0\5\0\250\255Hello\0", mask = M }))
      -- A block with BFINAL set (7.2.3.4), then a message after it.
      r:write(H.frame({ rsv = 4, opcode = 1, payload = "\243\72\205\201\201\7\0\0", mask = M }))
      r:write(H.frame({ rsv = 4, opcode = 1, payload = "\242\72\205\201\201\7\0", mask = M }))
      -- Two blocks in one message (7.2.3.5).
      r:write(H.frame({ rsv = 4, opcode = 1, payload = "\242\72\5\0\0\0\255\255\202\201\201\7\0", mask = M }))
    end)
    t:when(function() return #got == 7 end, function()
      assert.same({ "Hello", "Hello", "Hello", "Hello", "Hello", "Hello", "Hello" }, got)
      t:done()
    end)
    t:run()
  end)

  it("publish shares one compressed frame per window size and a plain one, each peer decodes its own", function()
    local t = H.new()
    local srv = assert(ws.server({ port = 0, compression = true, on_connection = function(stream)
      stream:subscribe("news")
      stream:read()
    end }))
    local msg = text(3000)
    local kinds = {
      { compression = { server_max_window_bits = 10 } },
      { compression = true },
      { compression = true },
      {},
    }
    t:co(function()
      local clients = {}
      for i, opts in ipairs(kinds) do clients[i] = assert(ws.connect(srv.url, opts)) end
      assert.equal(10, clients[1]:get_status().permessage_deflate.server_max_window_bits)
      assert.equal(15, clients[2]:get_status().permessage_deflate.server_max_window_bits)
      assert.is_false(clients[4]:get_status().permessage_deflate)
      t:when(function() local _, n = srv:connections(); return n == 4 end, function()
        assert.equal(4, srv:publish("news", msg))
        assert.equal(4, srv:publish("news", msg .. "!", "binary"))
        t:co(function()
          for _, c in ipairs(clients) do
            local d1, t1 = c:read()
            local d2, t2 = c:read()
            assert.is_true(d1 == msg and t1 == true)
            assert.is_true(d2 == msg .. "!" and t2 == false)
          end
          srv:close(0.2)
          t:done()
        end)
      end)
    end)
    t:run()
  end)

  it("a single small frame that inflates past the limit (a bomb from Python's zlib) stops at message_too_big", function()
    local p = io.popen([[/usr/bin/python3 -c "
import zlib,sys
c=zlib.compressobj(9, zlib.DEFLATED, -15)
d=c.compress(bytes(64*1024*1024))+c.flush(zlib.Z_SYNC_FLUSH)
sys.stdout.write(d[:-4].hex())"]])
    local hex = p:read("a")
    p:close()
    local bomb = hex:gsub("..", function(h) return string.char(tonumber(h, 16)) end)
    assert.is_true(#bomb < 100 * 1024, #bomb) -- 64 MiB in under 100 KiB
    local t = H.new()
    local raw
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp, { read_message_max = 1024 * 1024, permessage_deflate = { server_enable = true } })
      s:accept(t:cb(function(err)
        assert.is_nil(err)
        s:read(t:cb(function(e)
          assert.equal("message_too_big", e)
          t:when(function()
            for _, f in ipairs(raw:frames(true)) do
              if f.opcode == 8 then return (H.close_payload(f.payload)) == 1009 end
            end
          end, function() t:done() end)
        end))
      end))
    end)
    t:connect(port, function(tcp)
      raw = t:raw(tcp)
      raw:write(H.upgrade_request(port, "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
      raw:write(H.frame({ rsv = 4, opcode = 2, payload = bomb, mask = "abcd" }))
    end)
    t:run(10)
  end)

  it("a truncated compressed message (cut mid-block) fails with bad_compressed_data and 1007, and never hangs", function()
    local t = H.new()
    local raw
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp, { permessage_deflate = { server_enable = true } })
      s:accept(t:cb(function()
        s:read(t:cb(function(e)
          assert.equal("bad_compressed_data", e)
          t:when(function()
            for _, f in ipairs(raw:frames(true)) do
              if f.opcode == 8 then return (H.close_payload(f.payload)) == 1007 end
            end
          end, function() t:done() end)
        end))
      end))
    end)
    t:connect(port, function(tcp)
      raw = t:raw(tcp)
      raw:write(H.upgrade_request(port, "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
      -- "Hello" compressed, cut after three bytes, sent as a whole message.
      raw:write(H.frame({ rsv = 4, opcode = 1, payload = "\242\72\205", mask = "abcd" }))
    end)
    t:run()
  end)

  it("a peer that drops TCP in the middle of a compressed message gives EOF and frees its zlib state", function()
    local t = H.new()
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp, { permessage_deflate = { server_enable = true } })
      s:accept(t:cb(function()
        s:read(t:cb(function(e)
          assert.equal("EOF", e)
          t:done()
        end))
      end))
    end)
    t:connect(port, function(tcp)
      local r = t:raw(tcp)
      r:write(H.upgrade_request(port, "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
      r:write(H.frame({ fin = false, rsv = 4, opcode = 1, payload = "\242\72\205", mask = "abcd" }))
      t:after(50, function() tcp:shutdown() end)
    end)
    t:run()
  end)
end)
