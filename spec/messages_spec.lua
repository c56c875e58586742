-- read, read_some, write, write_some, the write queue, backpressure.
local H = require "helper"
local ws, uv = H.ws, H.uv

local function pattern(n)
  local chunk = {}
  for i = 0, 250 do chunk[#chunk + 1] = string.char(i) end
  chunk = table.concat(chunk)
  return chunk:rep(n // #chunk + 1):sub(1, n)
end

describe("messages", function()
  for _, size in ipairs({ 0, 1, 125, 126, 65535, 65536, 1000003 }) do
    it(("echo a %d-byte binary and text message both ways"):format(size), function()
      local t = H.new()
      local bin, text = pattern(size), ("é"):rep(size // 2) .. ("a"):rep(size % 2)
      t:pair({}, function(c, s)
        local function echo()
          s:read(t:cb(function(err, data, is_text)
            if err then return end
            s:write(data, is_text and "text" or "binary", t:cb(function(e) assert.is_nil(e) end))
            echo()
          end))
        end
        echo()
        c:write(bin, "binary", t:cb(function(err) assert.is_nil(err) end))
        c:write(text, "text", t:cb(function(err) assert.is_nil(err) end))
        c:read(t:cb(function(err, d, is_text)
          assert.is_nil(err)
          assert.is_false(is_text)
          assert.equal(#bin, #d)
          assert.is_true(d == bin)
          assert.is_true(c:got_binary())
          c:read(t:cb(function(err2, d2, is_text2)
            assert.is_nil(err2)
            assert.is_true(is_text2)
            assert.is_true(d2 == text)
            assert.is_true(c:got_text())
            assert.is_true(c:is_message_done())
            t:done()
          end))
        end))
      end)
      t:run(10)
    end)
  end

  it("a 16 MiB message gets through at the default limit", function()
    local t = H.new()
    local big = pattern(16 * 1024 * 1024)
    t:pair({}, function(c, s)
      s:read(t:cb(function(err, d)
        assert.is_nil(err)
        assert.equal(#big, #d)
        assert.is_true(d == big)
        t:done()
      end))
      c:write(big, "binary", t:cb(function(err) assert.is_nil(err) end))
    end)
    t:run(20)
  end)

  it("write uses the binary option by default, text otherwise", function()
    local t = H.new()
    t:pair({ client = { binary = true } }, function(c, s)
      c:write("x", t:cb(function() end))
      s:read(t:cb(function(_, _, is_text)
        assert.is_false(is_text)
        c:set_option("binary", false)
        c:write("y", t:cb(function() end))
        s:read(t:cb(function(_, _, is_text2)
          assert.is_true(is_text2)
          t:done()
        end))
      end))
    end)
    t:run()
  end)

  it("write_some builds one message from parts; read returns it whole", function()
    local t = H.new()
    t:pair({}, function(c, s)
      c:write_some(false, "Hel", t:cb(function(err) assert.is_nil(err) end))
      c:write_some(false, "lo, ", t:cb(function(err) assert.is_nil(err) end))
      c:write_some(true, "world", t:cb(function(err) assert.is_nil(err) end))
      s:read(t:cb(function(err, data, is_text)
        assert.is_nil(err)
        assert.equal("Hello, world", data)
        assert.is_true(is_text)
        t:done()
      end))
    end)
    t:run()
  end)

  it("read_some returns at most limit bytes and is_message_done says when the message ends", function()
    local t = H.new()
    t:pair({}, function(c, s)
      c:write("abcdefgh", "binary", t:cb(function() end))
      local parts, dones = {}, {}
      local function step()
        s:read_some(3, t:cb(function(err, data, is_text, done)
          assert.is_nil(err)
          assert.is_false(is_text)
          parts[#parts + 1] = data
          dones[#dones + 1] = done
          assert.equal(done, s:is_message_done())
          if done then
            assert.same({ "abc", "def", "gh" }, parts)
            assert.same({ false, false, true }, dones)
            t:done()
          else
            step()
          end
        end))
      end
      step()
    end)
    t:run()
  end)

  it("read_some hands out a message as its frames arrive", function()
    local t = H.new()
    t:pair({}, function(c, s)
      c:write_some(false, "part1", t:cb(function() end))
      s:read_some(0, t:cb(function(err, data, _, done)
        assert.is_nil(err)
        assert.equal("part1", data)
        assert.is_false(done)
        c:write_some(true, "part2", t:cb(function() end))
        s:read_some(0, t:cb(function(err2, data2, _, done2)
          assert.is_nil(err2)
          assert.equal("part2", data2)
          assert.is_true(done2)
          t:done()
        end))
      end))
    end)
    t:run()
  end)

  it("auto_fragment splits at write_buffer_bytes (4096 + 4096 + 1808), or not at all when off", function()
    for _, case in ipairs({ { true, { 4096, 4096, 1808 } }, { false, { 10000 } } }) do
      local t = H.new()
      local _, port = t:listen(function(tcp)
        local s = ws.stream(tcp, { auto_fragment = case[1] })
        s:accept(t:cb(function(err)
          assert.is_nil(err)
          s:write(("z"):rep(10000), "binary", t:cb(function() end))
        end))
      end)
      t:connect(port, function(tcp)
        local r = t:raw(tcp)
        r:write(H.upgrade_request(port))
        t:when(function()
          local n = 0
          for _, f in ipairs(r:frames(true)) do n = n + #f.payload end
          return n == 10000
        end, function()
          local sizes, fins = {}, {}
          for i, f in ipairs(r:frames(true)) do
            sizes[#sizes + 1] = #f.payload
            fins[#fins + 1] = f.fin
            assert.equal(i == 1 and 2 or 0, f.opcode)
            assert.is_false(f.masked)
          end
          assert.same(case[2], sizes)
          for i = 1, #fins do assert.equal(i == #fins, fins[i]) end
          t:done()
        end)
      end)
      t:run()
    end
  end)

  it("client frames are masked with a fresh key per frame", function()
    local t = H.new()
    local raw
    local _, port = t:raw_server(function(r) raw = r end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp)
      s:handshake("h", "/", t:cb(function(err)
        assert.is_nil(err)
        for _ = 1, 4 do s:write("same payload", t:cb(function() end)) end
      end))
    end)
    t:when(function() return raw and #raw:frames() == 4 end, function()
      local keys = {}
      for _, f in ipairs(raw:frames()) do
        assert.is_true(f.masked)
        assert.equal("same payload", f.payload)
        keys[f.key] = true
      end
      local n = 0
      for _ in pairs(keys) do n = n + 1 end
      assert.equal(4, n)
      t:done()
    end)
    t:run()
  end)

  it("writes are queued in order and complete in order", function()
    local t = H.new()
    t:pair({}, function(c, s)
      local completed, got = {}, {}
      for i = 1, 200 do
        c:write(tostring(i) .. (","):rep(i * 37), t:cb(function(err)
          assert.is_nil(err)
          completed[#completed + 1] = i
        end))
      end
      assert.is_true(c:buffered_amount() >= 0)
      local function loop()
        s:read(t:cb(function(err, data)
          assert.is_nil(err)
          got[#got + 1] = tonumber(data:match("^%d+"))
          if #got == 200 then
            for i = 1, 200 do assert.equal(i, got[i]) end
            t:when(function() return #completed == 200 end, function()
              for i = 1, 200 do assert.equal(i, completed[i]) end
              t:done()
            end)
          else
            loop()
          end
        end))
      end
      loop()
    end)
    t:run()
  end)

  it("queue_full once buffered_amount reaches max_queued_bytes, and earlier writes still complete", function()
    local t = H.new()
    t:pair({ client = { max_queued_bytes = 1024 * 1024 } }, function(c, s)
      -- The server does not read: its socket buffer and then our queue fill.
      local chunk = pattern(256 * 1024)
      local results, queued_at_call = {}, {}
      local first_full = true
      local function more(i)
        -- The decision is made when write() is called: what was queued then.
        queued_at_call[i] = c:buffered_amount()
        c:write(chunk, "binary", t:cb(function(err)
          results[i] = err or "ok"
          if err == "queue_full" and first_full then
            first_full = false
            assert.is_true(queued_at_call[i] >= 1024 * 1024, queued_at_call[i])
            for j = 1, i - 1 do
              if results[j] == "ok" then assert.is_true(queued_at_call[j] < 1024 * 1024) end
            end
            -- Now read everything on the server: the queue drains.
            local function drain()
              s:read(t:cb(function(e)
                if e then return end
                drain()
              end))
            end
            drain()
            t:when(function() return c:buffered_amount() == 0 end, function()
              c:write("after", t:cb(function(e2)
                assert.is_nil(e2)
                t:done()
              end))
            end)
          end
        end))
      end
      for i = 1, 64 do more(i) end
    end)
    t:run(20)
  end)

  it("stops reading the socket while unread messages exceed max_unread_bytes", function()
    local t = H.new()
    t:pair({ server = { max_unread_bytes = 64 * 1024 } }, function(c, s)
      local chunk = pattern(32 * 1024)
      for _ = 1, 256 do c:write(chunk, "binary", t:cb(function() end)) end
      -- Nobody reads on s: after a while the client's queue stays large.
      t:after(300, function()
        local queued = c:buffered_amount()
        assert.is_true(queued > 2 * 1024 * 1024,
          "the server kept reading: only " .. queued .. " bytes queued")
        local n = 0
        local function loop()
          s:read(t:cb(function(err, data)
            assert.is_nil(err)
            assert.equal(#chunk, #data)
            n = n + 1
            if n == 256 then t:done() else loop() end
          end))
        end
        loop()
      end)
    end)
    t:run(20)
  end)

  it("a second read while one is pending gets operation_in_progress", function()
    local t = H.new()
    t:pair({}, function(c, s)
      s:read(t:cb(function(err, data)
        assert.is_nil(err)
        assert.equal("one", data)
        t:done()
      end))
      s:read(t:cb(function(err)
        assert.equal("operation_in_progress", err)
        c:write("one", t:cb(function() end))
      end))
    end)
    t:run()
  end)
end)
