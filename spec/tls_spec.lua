-- wss:// with wolfSSL: our client and server over TLS 1.2 and 1.3, every
-- failure name, SNI, client certificates, shutdown. Certificates are made
-- at test time by csrc/test/gen-certs.sh.
local H = require "helper"
local ws, uv = H.ws, H.uv

local D -- the certificate directory

local function server_ctx(extra)
  local opts = { role = "server", cert = D .. "server.pem", key = D .. "server.key" }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(ws.tls.context(opts))
end

local function client_ctx(extra)
  local opts = { ca = D .. "ca.pem" }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(ws.tls.context(opts))
end

-- A wss server: on_stream(stream, err) after accept.
local function tls_server(t, sctx, on_stream, options)
  return t:listen(function(tcp)
    local s = ws.stream(ws.tls.wrap(tcp, sctx), options)
    t.streams[#t.streams + 1] = s
    s:accept(t:cb(function(err) on_stream(s, err) end))
  end)
end

-- A wss client: on_open(stream, err, res).
local function tls_client(t, port, cctx, servername, on_open, options)
  t:connect(port, function(tcp)
    local s = ws.stream(ws.tls.wrap(tcp, cctx, { servername = servername }), options)
    t.streams[#t.streams + 1] = s
    local res = {}
    s:handshake_ex(res, (servername or "localhost") .. ":" .. port, "/", nil,
      t:cb(function(err) on_open(s, err, res) end))
  end)
end

describe("wss", function()
  setup(function() D = H.make_certs() end)
  teardown(function() H.remove_dir(D) end)

  for _, version in ipairs({ "1.2", "1.3" }) do
    it("TLS " .. version .. ": handshake, text, binary, 1 MiB, ping, close", function()
      local t = H.new()
      local big = ("0123456789abcdef"):rep(65536)
      local sctx = server_ctx({ min_version = version, max_version = version })
      local _, port = tls_server(t, sctx, function(s, err)
        assert.is_nil(err)
        assert.equal("TLSv" .. version, s:get_status().tls.version)
        local function echo()
          s:read(t:cb(function(e, data, is_text)
            if e then return end
            s:write(data, is_text and "text" or "binary", function() end)
            echo()
          end))
        end
        echo()
      end)
      tls_client(t, port, client_ctx(), "localhost", function(c, err, res)
        assert.is_nil(err)
        assert.equal(101, res.status)
        local st = c:get_status().tls
        assert.equal("TLSv" .. version, st.version)
        assert.is_string(st.cipher)
        local pongs = 0
        c:control_callback(t:cb(function(kind) if kind == "pong" then pongs = pongs + 1 end end))
        c:ping("p", t:cb(function(e) assert.is_nil(e) end))
        c:write("text over tls", t:cb(function(e) assert.is_nil(e) end))
        c:write(big, "binary", t:cb(function(e) assert.is_nil(e) end))
        c:read(t:cb(function(e1, d1, text1)
          assert.is_nil(e1)
          assert.equal("text over tls", d1)
          assert.is_true(text1)
          c:read(t:cb(function(e2, d2, text2)
            assert.is_nil(e2)
            assert.is_false(text2)
            assert.is_true(d2 == big)
            assert.equal(1, pongs)
            c:close(1000, "bye", t:cb(function(e3)
              assert.is_nil(e3)
              t:done()
            end))
          end))
        end))
      end)
      t:run(10)
    end)
  end

  it("verifies IP addresses: servername 127.0.0.1 matches the certificate's IP", function()
    local t = H.new()
    local _, port = tls_server(t, server_ctx(), function() end)
    tls_client(t, port, client_ctx(), "127.0.0.1", function(_, err)
      assert.is_nil(err)
      t:done()
    end)
    t:run()
  end)

  local failures = {
    { "tls_unknown_ca", function() return server_ctx() end, function() return client_ctx({ ca = D .. "ca2.pem" }) end, "localhost" },
    { "tls_cert_expired", function() return server_ctx({ cert = D .. "expired.pem", key = D .. "expired.key" }) end, function() return client_ctx() end, "localhost" },
    { "tls_hostname_mismatch", function() return server_ctx({ cert = D .. "other.pem", key = D .. "other.key" }) end, function() return client_ctx() end, "localhost" },
    { "tls_hostname_mismatch", function() return server_ctx() end, function() return client_ctx() end, "10.1.2.3" },
    { "tls_protocol_version", function() return server_ctx({ min_version = "1.3" }) end, function() return client_ctx({ max_version = "1.2" }) end, "localhost" },
    { "tls_handshake_failed", function() return server_ctx({ ciphers = "TLS13-AES128-GCM-SHA256", min_version = "1.3" }) end,
      function() return client_ctx({ ciphers = "TLS13-CHACHA20-POLY1305-SHA256", min_version = "1.3" }) end, "localhost" },
  }
  for _, case in ipairs(failures) do
    local name, mk_server, mk_client, servername = case[1], case[2], case[3], case[4]
    it(("the client reports %s (servername %s), the server fails too, nothing stays open"):format(name, servername), function()
      local t = H.new()
      local server_err
      local _, port = tls_server(t, mk_server(), function(_, err) server_err = err or "ok" end)
      tls_client(t, port, mk_client(), servername, function(c, err)
        assert.equal(name, err)
        assert.is_string(ws.errors[name])
        assert.is_false(c:is_open())
        t:when(function() return server_err end, function()
          assert.is_true(server_err ~= "ok", "the server accepted")
          t:done()
        end)
      end, { timeout = { handshake = 5 } })
      t:run(8)
    end)
  end

  it("verify = false (explicit) connects to an untrusted server", function()
    local t = H.new()
    local _, port = tls_server(t, server_ctx({ cert = D .. "other.pem", key = D .. "other.key" }), function() end)
    tls_client(t, port, assert(ws.tls.context({ verify = false })), "localhost", function(_, err)
      assert.is_nil(err)
      t:done()
    end)
    t:run()
  end)

  it("a client's default trust is the system store (our test CA is not in it)", function()
    local t = H.new()
    local _, port = tls_server(t, server_ctx(), function() end)
    tls_client(t, port, assert(ws.tls.context({})), "localhost", function(_, err)
      assert.equal("tls_unknown_ca", err)
      t:done()
    end)
    t:run()
  end)

  it("SNI picks the server context for the name the client asks for", function()
    local t = H.new()
    local other = server_ctx({ cert = D .. "other.pem", key = D .. "other.key" })
    local main = server_ctx({ sni = { ["other.example"] = other } })
    local seen = {}
    local _, port = tls_server(t, main, function(s, err)
      assert.is_nil(err)
      seen[#seen + 1] = s:get_status().tls.servername or "none"
    end)
    local opened = 0
    tls_client(t, port, client_ctx(), "other.example", function(_, err)
      assert.is_nil(err)
      opened = opened + 1
    end)
    tls_client(t, port, client_ctx(), "localhost", function(_, err)
      assert.is_nil(err)
      opened = opened + 1
    end)
    t:when(function() return opened == 2 and #seen == 2 end, function()
      table.sort(seen)
      assert.same({ "localhost", "other.example" }, seen)
      t:done()
    end)
    t:run()
  end)

  for _, version in ipairs({ "1.2", "1.3" }) do
    it("client certificates over TLS " .. version .. ": required and given, missing, from another CA; optional", function()
      for _, case in ipairs({
        { true, { cert = D .. "client.pem", key = D .. "client.key" }, nil, nil },
        -- A TLS 1.2 client learns from the server's handshake_failure
        -- alert; a TLS 1.3 client hears that its certificate is missing.
        { true, {}, version == "1.2" and "tls_handshake_failed" or "tls_bad_certificate", "tls_bad_certificate" },
        { true, { cert = D .. "client2.pem", key = D .. "client2.key" }, "tls_unknown_ca", "tls_unknown_ca" },
        { "optional", {}, nil, nil },
        { "optional", { cert = D .. "client.pem", key = D .. "client.key" }, nil, nil },
      }) do
        local t = H.new()
        local server_err
        local sctx = server_ctx({ verify = case[1], ca = D .. "ca.pem", max_version = version })
        local _, port = tls_server(t, sctx, function(_, err) server_err = err or "ok" end, { timeout = { handshake = 3 } })
        tls_client(t, port, client_ctx(case[2]), "localhost", function(_, err)
          assert.equal(case[3], err)
          t:when(function() return server_err end, function()
            assert.equal(case[4] or "ok", server_err)
            t:done()
          end)
        end, { timeout = { handshake = 3 } })
        t:run()
      end
    end)
  end

  it("ALPN: the server picks its first protocol that the client offers", function()
    local t = H.new()
    local seen
    local _, port = tls_server(t, server_ctx({ alpn = { "game/2", "game/1" } }), function(s)
      seen = s:get_status().tls.alpn
    end)
    tls_client(t, port, client_ctx({ alpn = "game/1,game/2" }), "localhost", function(c, err)
      assert.is_nil(err)
      assert.equal("game/2", c:get_status().tls.alpn)
      t:when(function() return seen end, function()
        assert.equal("game/2", seen)
        t:done()
      end)
    end)
    t:run()
  end)

  it("a peer's fatal alert is tls_alert", function()
    local t = H.new()
    local _, port = tls_server(t, server_ctx(), function(_, err)
      assert.equal("tls_alert", err)
      t:done()
    end)
    -- A fatal internal_error alert record, before any handshake.
    t:connect(port, function(tcp) tcp:write("\21\3\3\0\2\2\80") end)
    t:run()
  end)

  it("a record damaged in transit fails the stream with tls_bad_record, both ends end", function()
    local t = H.new()
    local sctx = server_ctx()
    local server_err
    local _, port = tls_server(t, sctx, function(s, err)
      assert.is_nil(err)
      local function loop()
        s:read(t:cb(function(e)
          if e then server_err = e else loop() end
        end))
      end
      loop()
    end)
    -- A TCP proxy that flips one bit in the first application record the
    -- client sends after its handshake (the third chunk it writes).
    local chunks = 0
    local _, proxy_port = t:listen(function(down)
      local up = t:track(H.uv.new_tcp())
      up:connect("127.0.0.1", port, t:cb(function(err)
        assert.is_nil(err)
        up:read_start(t:cb(function(_, data)
          if data then down:write(data) elseif not down:is_closing() then down:close() end
        end))
        down:read_start(t:cb(function(_, data)
          if not data then
            if not up:is_closing() then up:close() end
            return
          end
          chunks = chunks + 1
          if chunks >= 4 and not t.flipped and #data > 30 then
            t.flipped = true
            data = data:sub(1, -2) .. string.char(data:byte(-1) ~ 1)
          end
          up:write(data)
        end))
      end))
    end)
    tls_client(t, proxy_port, client_ctx(), "localhost", function(c, err)
      assert.is_nil(err)
      local client_err
      local function loop()
        c:read(t:cb(function(e)
          if e then client_err = e else loop() end
        end))
      end
      loop()
      local function more(i)
        if i > 20 or server_err then return end
        c:write(("payload %d "):format(i):rep(10), t:cb(function() more(i + 1) end))
      end
      more(1)
      t:when(function() return server_err and client_err end, function()
        assert.equal("tls_bad_record", server_err)
        assert.is_string(client_err)
        assert.is_false(c:is_open())
        t:done()
      end)
    end)
    t:run()
  end)

  it("bad arguments fail at once with a message that names the problem", function()
    local ctx, msg, name = ws.tls.context({ role = "server", cert = D .. "missing.pem", key = D .. "server.key" })
    assert.is_nil(ctx)
    assert.equal("ENOENT", name)
    assert.truthy(msg:find("missing.pem", 1, true))
    ctx, msg, name = ws.tls.context({ role = "server", cert = D .. "server.pem", key = D .. "other.key" })
    assert.is_nil(ctx)
    assert.equal("EINVAL", name)
    assert.truthy(msg:find("does not match", 1, true), msg)
    ctx, msg = ws.tls.context({ role = "server", cert = D .. "garbage.pem", key = D .. "server.key" })
    assert.is_nil(ctx)
    assert.truthy(msg:find("cert", 1, true), msg)
    ctx, msg = ws.tls.context({ role = "server", cert = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", key = D .. "server.key" })
    assert.is_nil(ctx)
    assert.truthy(msg, msg)
    assert.has_error(function() ws.tls.context({ role = "peer" }) end)
    assert.has_error(function() ws.tls.context({ min_version = "1.1" }) end)
    assert.has_error(function() ws.tls.context("x") end)
    -- PEM text works as well as file names.
    local f = io.open(D .. "server.pem"); local cert = f:read("a"); f:close()
    f = io.open(D .. "server.key"); local key = f:read("a"); f:close()
    assert.is_not_nil(ws.tls.context({ role = "server", cert = cert, key = key }))
    f = io.open(D .. "ca.pem"); local ca = f:read("a"); f:close()
    assert.is_not_nil(ws.tls.context({ ca = ca }))
    assert.is_not_nil(ws.tls.context({ ca = D .. "cadir" }))
  end)

  it("the TLS handshake counts against the handshake timeout", function()
    local t = H.new()
    local _, port = t:listen(function(tcp) t:raw(tcp) end) -- TCP only, never speaks TLS
    t:connect(port, function(tcp)
      local s = ws.stream(ws.tls.wrap(tcp, client_ctx(), { servername = "localhost" }),
        { timeout = { handshake = 0.3 } })
      local start = uv.now()
      s:handshake("localhost", "/", t:cb(function(err)
        assert.equal("timeout", err)
        assert.is_true(uv.now() - start >= 280)
        t:done()
      end))
    end)
    t:run()
  end)

  it("plain HTTP to a TLS server fails the accept with tls_bad_record", function()
    local t = H.new()
    local _, port = tls_server(t, server_ctx(), function(_, err)
      assert.equal("tls_bad_record", err)
      t:done()
    end)
    t:connect(port, function(tcp) tcp:write(H.upgrade_request(port)) end)
    t:run()
  end)

  it("next_layer() is the TLS layer; its handle() is the luv handle", function()
    local t = H.new()
    local _, port = tls_server(t, server_ctx(), function() end)
    t:connect(port, function(tcp)
      local layer = ws.tls.wrap(tcp, client_ctx(), { servername = "localhost" })
      local s = ws.stream(layer)
      assert.equal(layer, s:next_layer())
      assert.equal(tcp, layer:handle())
      assert.has_error(function() ws.stream(layer) end) -- a layer serves one stream
      -- A verifying client must say which host it expects.
      assert.has_error(function() ws.tls.wrap(tcp, client_ctx()) end,
        "bad argument #3 to 'wrap' (servername is required to verify the server's certificate (or make the context with verify = false))")
      assert.is_not_nil(ws.tls.wrap(tcp, assert(ws.tls.context({ verify = false }))))
      t:done()
    end)
    t:run()
  end)

  it("a peer that drops TCP without close_notify after the close handshake is a clean close", function()
    local t = H.new()
    -- Our plain ws server behind a Node TLS proxy that drops TCP without
    -- close_notify once the upstream ends.
    local _, upstream = t:ws_server({}, function(s)
      s:read(t:cb(function() end))
    end)
    local dropped = false
    t:spawn("node", { "spec/peers/tls_proxy.js", "--upstream", tostring(upstream),
      "--cert", D .. "server.pem", "--key", D .. "server.key", "--lifetime", "20" }, function(line)
      local port = line:match('"event":"listening","port":(%d+)')
      if line:find('"dropped"', 1, true) then dropped = true end
      if not port then return end
      tls_client(t, tonumber(port), client_ctx(), "localhost", function(c, err)
        assert.is_nil(err)
        local read_err
        c:read(t:cb(function(e) read_err = e end))
        c:close(1000, "bye", t:cb(function(e)
          assert.is_nil(e)
          t:when(function() return read_err and dropped end, function()
            assert.equal("closed", read_err)
            t:done()
          end)
        end))
      end)
    end)
    t:run(10)
  end)

  it("1,000 failed TLS handshakes leave memory flat #memory", function()
    local p = io.popen('LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 spec/scripts/tls_failures.lua ' .. D .. " 1000 2>&1")
    local out = p:read("a")
    p:close()
    local marks = {}
    for n, lua, rss in out:gmatch("mark (%d+) (%d+) (%d+)") do
      marks[#marks + 1] = { tonumber(n), tonumber(lua), tonumber(rss) }
    end
    assert.truthy(out:find("failures 1000", 1, true), out)
    assert.equal(10, #marks, out)
    local first, last = marks[2], marks[#marks]
    assert.is_true(last[2] - first[2] < 64, ("Lua heap %d -> %d KiB"):format(first[2], last[2]))
    assert.is_true(last[3] - first[3] < 2048, ("RSS %d -> %d KiB"):format(first[3], last[3]))
  end)
end)
