-- ws.connect, ws.server, coroutines, events, topics, reconnect.
local H = require "helper"
local ws, uv = H.ws, H.uv

-- A server that is closed when the test ends.
local function server(t, opts)
  local srv = assert(ws.server(opts))
  t.servers = t.servers or {}
  t.servers[#t.servers + 1] = srv
  local orig_run = t.run
  t.run = function(self, secs)
    local ok, err = pcall(orig_run, self, secs)
    for _, s in ipairs(self.servers) do
      if not s._closing then s:close(0.05, function() end) end
    end
    H.wait(80)
    if not ok then error(err, 0) end
  end
  return srv
end

describe("ws.url.parse", function()
  it("parses ws and wss URLs with defaults, IPv6 literals and queries", function()
    local u = ws.url.parse("ws://example.com/chat?room=1")
    assert.same({ scheme = "ws", secure = false, host = "example.com", port = 80,
      target = "/chat?room=1", host_header = "example.com" }, u)
    u = ws.url.parse("wss://[::1]:8443")
    assert.same({ scheme = "wss", secure = true, host = "::1", port = 8443,
      target = "/", host_header = "[::1]:8443" }, u)
    u = ws.url.parse("WSS://Host.Example?x=1")
    assert.equal(443, u.port)
    assert.equal("/?x=1", u.target)
    assert.equal("wss", u.scheme)
    for _, bad in ipairs({ "http://x/", "ws://", "ws://host:0/", "ws://host:70000/",
      "ws://host/#frag", "ws://ho st/", "ws://user@host/", "ws://[::1/", "host/path", 42 }) do
      local v, msg = ws.url.parse(bad)
      assert.is_nil(v, tostring(bad))
      assert.is_string(msg)
    end
  end)
end)

describe("ws.connect", function()
  it("connects with a callback; headers, origin and subprotocols reach the server", function()
    local t = H.new()
    local seen
    local srv = server(t, { port = 0, subprotocols = { "v2", "v1" },
      on_connection = function(stream, req)
        seen = req
        for data in stream:messages() do
          assert(stream:write("echo:" .. data))
        end
      end })
    local returned = false
    ws.connect(srv.url, { headers = { ["X-Token"] = "abc" }, origin = "https://game.example",
      subprotocols = { "v1", "v2" } }, t:cb(function(err, stream, res)
      assert.is_true(returned)
      assert.is_nil(err)
      assert.equal(101, res.status)
      assert.equal("v2", stream:get_status().subprotocol)
      assert.equal("abc", seen.headers["x-token"])
      assert.equal("https://game.example", seen.headers.Origin)
      stream:write("hi", t:cb(function() end))
      stream:read(t:cb(function(e, data)
        assert.is_nil(e)
        assert.equal("echo:hi", data)
        t:done()
      end))
    end))
    returned = true
    t:run()
  end)

  it("in a coroutine: returns stream, res; or nil, message, name, res", function()
    local t = H.new()
    local srv = server(t, { port = 0, path = "/ok", on_upgrade = function(req)
      if req.headers["x-key"] ~= "open sesame" then
        return 401, "who are you?", { ["WWW-Authenticate"] = "Bearer" }
      end
      return true
    end, on_connection = function() end })
    t:co(function()
      local s, res = ws.connect(srv.url, { headers = { ["X-Key"] = "open sesame" } })
      assert.equal(101, res.status)
      assert.is_true(s:is_open())
      local none, msg, name, res2 = ws.connect(srv.url)
      assert.is_nil(none)
      assert.equal("upgrade_declined", name)
      assert.equal("upgrade_declined: " .. ws.errors.upgrade_declined, msg)
      assert.equal(401, res2.status)
      assert.equal("who are you?", res2.body)
      assert.equal("Bearer", res2.headers["www-authenticate"])
      t:done()
    end)
    t:run()
  end)

  it("reports errors by name: refused, unknown host, timeout", function()
    local t = H.new()
    -- A port nobody listens on.
    local probe = uv.new_tcp()
    probe:bind("127.0.0.1", 0)
    local closed_port = probe:getsockname().port
    probe:close()
    -- A TCP server that never answers the upgrade.
    local _, silent = t:listen(function(tcp) t:raw(tcp) end)
    t:co(function()
      local s, _, name = ws.connect("ws://127.0.0.1:" .. closed_port .. "/")
      assert.is_nil(s)
      assert.equal("ECONNREFUSED", name)
      s, _, name = ws.connect("ws://no-such-host.invalid/")
      assert.is_nil(s)
      assert.truthy(name == "EAI_NONAME" or name == "EAI_AGAIN" or name == "EAI_FAIL", name)
      local start = uv.now()
      s, _, name = ws.connect("ws://127.0.0.1:" .. silent .. "/", { timeout = { handshake = 0.25 } })
      assert.is_nil(s)
      assert.equal("timeout", name)
      assert.is_true(uv.now() - start >= 240)
      t:done()
    end)
    t:run()
  end)

  it("raises on a bad URL or an unknown option, and without a callback outside a coroutine", function()
    assert.has_error(function() ws.connect("http://x/", function() end) end)
    assert.has_error(function() ws.connect("ws://x/", { no_such = 1 }, function() end) end)
    assert.has_error(function() ws.connect("ws://127.0.0.1:1/") end)
  end)

  it("connects to an IPv6 literal", function()
    local probe = uv.new_tcp()
    local ok = probe:bind("::1", 0)
    probe:close()
    if not ok then
      pending("no IPv6 loopback on this machine")
      return
    end
    local t = H.new()
    local srv = server(t, { host = "::1", port = 0, on_connection = function(stream)
      for data in stream:messages() do stream:write(data, function() end) end
    end })
    assert.truthy(srv.url:match("^ws://%[::1%]:%d+/$"), srv.url)
    t:co(function()
      local s, res = assert(ws.connect(srv.url))
      assert.equal(101, res.status)
      assert.equal("inet6", s:peername().family)
      assert(s:write("v6"))
      assert.equal("v6", (s:read()))
      t:done()
    end)
    t:run()
  end)

  it("wss:// with a CA, SNI and host-name verification", function()
    local D = H.make_certs()
    local t = H.new()
    local srv = server(t, { port = 0, tls = { cert = D .. "server.pem", key = D .. "server.key" },
      on_connection = function(stream)
        for data in stream:messages() do stream:write(data, function() end) end
      end })
    assert.truthy(srv.url:match("^wss://"))
    local url = "wss://localhost:" .. srv.port .. "/"
    t:co(function()
      local ca = assert(ws.tls.context({ ca = D .. "ca.pem" }))
      local s = assert(ws.connect(url, { tls = ca }))
      assert.equal("localhost", s:get_status().tls and "localhost")
      assert(s:write("secure"))
      assert.equal("secure", (s:read()))
      -- Without the CA (system store only): refused.
      local none, _, name = ws.connect(url)
      assert.is_nil(none)
      assert.equal("tls_unknown_ca", name)
      -- A table of context options works too.
      local s2 = assert(ws.connect(url, { tls = { ca = D .. "ca.pem" } }))
      assert.is_true(s2:is_open())
      t:done()
    end)
    t:run()
    H.remove_dir(D)
  end)

  it("reconnects with backoff after the server restarts, with an event per attempt", function()
    local t = H.new()
    local port
    local function start_server()
      return assert(ws.server({ port = port or 0, on_connection = function(stream)
        for data in stream:messages() do stream:write(data, function() end) end
      end }))
    end
    local srv = start_server()
    port = srv.port
    local opens, attempts = 0, {}
    local handle
    handle = ws.connect("ws://127.0.0.1:" .. port .. "/", {
      reconnect = { min = 0.05, max = 0.2, factor = 2, jitter = 0 },
      on_reconnect = function(attempt, delay, err) attempts[#attempts + 1] = { attempt, delay, err } end,
    }, t:cb(function(err, stream)
      assert.is_nil(err)
      opens = opens + 1
      if opens == 1 then
        -- Restart the server: the client sees the close and comes back.
        srv:close(0.2, t:cb(function()
          t:after(300, function() srv = start_server() end)
        end))
      else
        stream:write("back", t:cb(function() end))
        stream:read(t:cb(function(e, data)
          assert.is_nil(e)
          assert.equal("back", data)
          handle.close()
          srv:close(0.1, function() end)
          t:done()
        end))
      end
    end))
    t:run(8)
    assert.equal(2, opens)
    assert.is_true(#attempts >= 2, "attempts: " .. #attempts)
    -- The first attempt follows the close; delays grow and are capped.
    assert.equal(1, attempts[1][1])
    for i = 2, #attempts do
      assert.equal(i, attempts[i][1])
      assert.is_true(attempts[i][2] >= attempts[i - 1][2] - 1e-9)
      assert.is_true(attempts[i][2] <= 0.2 + 1e-9)
    end
  end)
end)

describe("ws.server", function()
  it("serves HTTP beside WebSocket on one port; 404 without on_request or off path", function()
    local t = H.new()
    local srv = server(t, { port = 0, path = "/ws",
      on_request = function(req, res)
        if req.target == "/" then
          res.headers = { ["Content-Type"] = "text/html" }
          res.body = "<h1>page</h1>"
        else
          res.status = 404
          res.body = "nope"
        end
      end,
      on_connection = function() end })
    local srv2 = server(t, { port = 0, on_connection = function() end })
    local function get(port, target, cb)
      t:connect(port, function(tcp)
        local r = t:raw(tcp)
        r.on_eof = function() cb(r.data) end
        r:write("GET " .. target .. " HTTP/1.1\r\nHost: x\r\n\r\n")
      end)
    end
    local got = {}
    get(srv.port, "/", function(d) got.page = d end)
    get(srv.port, "/missing", function(d) got.missing = d end)
    get(srv2.port, "/", function(d) got.none = d end)
    t:connect(srv.port, function(tcp)
      -- An upgrade on the wrong path.
      local r = t:raw(tcp)
      r.on_eof = function() got.wrong_path = r.data end
      r:write((H.upgrade_request(srv.port):gsub("GET / ", "GET /other ")))
    end)
    t:when(function() return got.page and got.missing and got.none and got.wrong_path end, function()
      assert.truthy(got.page:match("^HTTP/1.1 200 "))
      assert.truthy(got.page:find("Content-Type: text/html", 1, true))
      assert.truthy(got.page:find("<h1>page</h1>", 1, true))
      assert.truthy(got.missing:match("^HTTP/1.1 404 "))
      assert.truthy(got.none:match("^HTTP/1.1 404 "))
      assert.truthy(got.wrong_path:match("^HTTP/1.1 404 "))
      t:done()
    end)
    t:run()
  end)

  it("an Origin allow-list refuses other browsers' pages with 403", function()
    local t = H.new()
    local srv = server(t, { port = 0, origins = { "https://game.example" }, on_connection = function() end })
    t:co(function()
      assert(ws.connect(srv.url, { origin = "https://game.example" }))
      local s, _, name, res = ws.connect(srv.url, { origin = "https://evil.example" })
      assert.is_nil(s)
      assert.equal("upgrade_declined", name)
      assert.equal(403, res.status)
      t:done()
    end)
    t:run()
  end)

  it("max_connections: the next client gets 503", function()
    local t = H.new()
    local srv = server(t, { port = 0, max_connections = 2, on_connection = function() end })
    t:co(function()
      local a = assert(ws.connect(srv.url))
      local b = assert(ws.connect(srv.url))
      local c, _, name, res = ws.connect(srv.url)
      assert.is_nil(c)
      assert.equal("upgrade_declined", name)
      assert.equal(503, res.status)
      local _, n = srv:connections()
      assert.equal(2, n)
      assert(a:close(1000, "bye"))
      t:when(function() local _, m = srv:connections(); return m == 1 end, function()
        t:co(function()
          assert(ws.connect(srv.url))
          assert.is_true(b:is_open())
          t:done()
        end)
      end)
    end)
    t:run()
  end)

  it("handshake_timeout drops a client that never sends its request", function()
    local t = H.new()
    local srv = server(t, { port = 0, handshake_timeout = 0.2, on_connection = function() end })
    t:connect(srv.port, function(tcp)
      local r = t:raw(tcp)
      local start = uv.now()
      r.on_eof = function()
        assert.is_true(uv.now() - start >= 180)
        t:when(function() local _, n = srv:connections(); return n == 0 end, function() t:done() end)
      end
    end)
    t:run()
  end)

  it("isolates handler errors: logged with a traceback, that connection closed with 1011", function()
    local t = H.new()
    local logged = {}
    local srv = server(t, { port = 0, log = function(msg) logged[#logged + 1] = msg end,
      on_connection = function(stream)
        local data = stream:read()
        if data == "crash" then error("handler bug") end
        stream:write("fine", function() end)
      end })
    t:co(function()
      local a = assert(ws.connect(srv.url))
      local b = assert(ws.connect(srv.url))
      assert(a:write("crash"))
      local none, _, name = a:read()
      assert.is_nil(none)
      assert.equal("closed", name)
      assert.equal(1011, (a:reason()))
      assert(b:write("ok"))
      assert.equal("fine", (b:read()))
      assert.equal(1, #logged)
      assert.truthy(logged[1]:find("handler bug", 1, true))
      assert.truthy(logged[1]:find("stack traceback", 1, true))
      t:done()
    end)
    t:run()
  end)

  it("a busy port gives luv's fail triple", function()
    local t = H.new()
    local srv = server(t, { port = 0, on_connection = function() end })
    local none, msg, name = ws.server({ port = srv.port })
    assert.is_nil(none)
    assert.equal("EADDRINUSE", name)
    assert.truthy(msg:match("^EADDRINUSE: "))
    assert.has_error(function() ws.server({ port = 0, no_such_option = true }) end)
    t:done()
    t:run()
  end)

  it("close([timeout]): 1001 to every client, waits for their closes, clients mid-message included", function()
    local t = H.new()
    local srv = server(t, { port = 0, on_connection = function(stream)
      for _ in stream:messages() do end
    end })
    t:co(function()
      local clients = {}
      for i = 1, 5 do clients[i] = assert(ws.connect(srv.url)) end
      -- One client is in the middle of a fragmented message.
      assert(clients[1]:write_some(false, "half of a "))
      local results = {}
      for i, c in ipairs(clients) do
        c:read(function(err) results[i] = { err, c:reason() } end)
      end
      local start = uv.now()
      srv:close(2)
      assert.is_true(uv.now() - start < 1500)
      t:when(function() return #results == 5 end, function()
        for i = 1, 5 do
          assert.equal("closed", results[i][1])
          assert.equal(1001, results[i][2])
        end
        local _, n = srv:connections()
        assert.equal(0, n)
        -- The port is free again.
        local again = assert(ws.server({ port = srv.port }))
        again:close(0, function() end)
        t:done()
      end)
    end)
    t:run()
  end)
end)

describe("ws.server close", function()
  it("does not wait out its timeout for connections already closing or handshaking", function()
    local t = H.new()
    local srv = server(t, { port = 0, on_connection = function(stream)
      for _ in stream:messages() do end
    end })
    t:co(function()
      local s = assert(ws.connect(srv.url))
      assert(s:close(1000, "bye"))
      -- A TCP client that never finishes its handshake.
      local raw = t:track(uv.new_tcp())
      raw:connect("127.0.0.1", srv.port, function() end)
      t:after(30, function()
        local start = uv.now()
        t:co(function()
          srv:close(3)
          assert.is_true(uv.now() - start < 1000, "took " .. (uv.now() - start) .. " ms")
          t:done()
        end)
      end)
    end)
    t:run()
  end)

  it("get_status tells the state and why a stream ended", function()
    local t = H.new()
    local srv = server(t, { port = 0, options = { read_message_max = 10 },
      on_connection = function(stream)
        for _ in stream:messages() do end
        local st = stream:get_status()
        assert.equal("message_too_big", st.error)
        t:done()
      end })
    t:co(function()
      local s = assert(ws.connect(srv.url))
      assert.equal("open", s:get_status().state)
      assert(s:write(("x"):rep(100)))
    end)
    t:run()
  end)
end)

describe("events and coroutines", function()
  it("stream:on message, close, ping, pong", function()
    local t = H.new()
    local srv = server(t, { port = 0, on_connection = function(stream)
      assert(stream:write("one"))
      assert(stream:write("two", "binary"))
      assert(stream:ping("hello?"))
      stream:read()
      assert(stream:close(4000, "done"))
    end })
    ws.connect(srv.url, t:cb(function(err, stream)
      assert.is_nil(err)
      local got = {}
      stream:on("ping", t:cb(function(p) got[#got + 1] = "ping:" .. p end))
      stream:on("message", t:cb(function(data, is_text) got[#got + 1] = data .. ":" .. tostring(is_text) end))
      stream:on("close", t:cb(function(code, reason, e)
        assert.equal(4000, code)
        assert.equal("done", reason)
        assert.equal("closed", e)
        assert.same({ "one:true", "two:false", "ping:hello?" }, got)
        t:done()
      end))
      -- Reads and events do not mix.
      stream:read(t:cb(function(e) assert.equal("operation_in_progress", e) end))
      t:after(50, function() stream:write("bye", function() end) end)
    end))
    t:run()
  end)

  it("messages() outside a coroutine is an error", function()
    local t = H.new()
    t:pair({}, function(c)
      assert.has_error(function() c:messages() end)
      assert.has_error(function() c:on("nope", function() end) end)
      t:done()
    end)
    t:run()
  end)
end)

describe("topics", function()
  it("publish reaches every subscriber once (except one), built once; unsubscribe stops it", function()
    local t = H.new()
    local srv
    srv = server(t, { port = 0, on_connection = function(stream)
      stream:subscribe("room")
      for data in stream:messages() do
        if data == "leave" then
          stream:unsubscribe("room")
          stream:write("left", function() end)
        else
          srv:publish("room", data, "text", stream)
        end
      end
    end })
    t:co(function()
      local a = assert(ws.connect(srv.url))
      local b = assert(ws.connect(srv.url))
      local c = assert(ws.connect(srv.url))
      assert.equal(0, srv:publish("nobody", "x"))
      assert(a:write("from a"))
      assert.equal("from a", (b:read()))
      assert.equal("from a", (c:read()))
      assert(c:write("leave"))
      assert.equal("left", (c:read()))
      local n = srv:publish("room", "\1\2", "binary")
      assert.equal(2, n)
      local d1, t1 = a:read()
      local d2, t2 = b:read()
      assert.same({ "\1\2", false, "\1\2", false }, { d1, t1, d2, t2 })
      t:done()
    end)
    t:run()
  end)

  it("a slow subscriber is cut off with 1008 while the others keep receiving", function()
    local t = H.new()
    local srv = server(t, { port = 0, close_timeout = 0.2, options = { max_queued_bytes = 256 * 1024 },
      on_connection = function(stream)
        stream:subscribe("feed")
        stream:read()
      end })
    local big = ("z"):rep(128 * 1024)
    t:co(function()
      local fast = assert(ws.connect(srv.url))
      local slow = assert(ws.connect(srv.url, { max_unread_bytes = 64 * 1024 }))
      -- slow never reads; fast reads everything.
      local got = 0
      fast:on("message", function() got = got + 1 end)
      local sent = 0
      local timer = t:track(uv.new_timer())
      timer:start(1, 1, t:cb(function()
        srv:publish("feed", big, "binary")
        sent = sent + 1
        if sent == 400 then
          timer:stop()
          t:when(function() return got == 400 end, function()
            local _, n = srv:connections()
            assert.equal(1, n)
            slow:read_some(0, t:cb(function() end)) -- drain what it had
            t:done()
          end)
        end
      end))
    end)
    t:run(20)
  end)

  it("slow_subscriber = \"skip\" drops messages for a full subscriber and keeps it", function()
    local t = H.new()
    local srv = server(t, { port = 0, slow_subscriber = "skip", options = { max_queued_bytes = 256 * 1024 },
      on_connection = function(stream)
        stream:subscribe("feed")
        stream:read()
      end })
    local big = ("y"):rep(128 * 1024)
    t:co(function()
      local fast = assert(ws.connect(srv.url))
      local slow = assert(ws.connect(srv.url, { max_unread_bytes = 64 * 1024 }))
      local got, sent, fewer = 0, 0, false
      fast:on("message", function() got = got + 1 end)
      local timer = t:track(uv.new_timer())
      timer:start(1, 1, t:cb(function()
        if srv:publish("feed", big, "binary") < 2 then fewer = true end
        sent = sent + 1
        if sent == 400 then
          timer:stop()
          t:when(function() return got == 400 end, function()
            assert.is_true(fewer, "the slow subscriber was never skipped")
            local _, n = srv:connections()
            assert.equal(2, n) -- skipped, not closed
            assert.is_true(slow:is_open())
            t:done()
          end)
        end
      end))
    end)
    t:run(20)
  end)

  it("subscribe needs a server stream", function()
    local t = H.new()
    t:pair({}, function(c)
      assert.has_error(function() c:subscribe("x") end)
      t:done()
    end)
    t:run()
  end)
end)
