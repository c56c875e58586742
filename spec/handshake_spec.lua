-- ws.handshake_ex / ws.handshake / ws.accept / ws.accept_ex over loopback.
local H = require "helper"
local ws, uv = H.ws, H.uv

describe("handshake_ex", function()
  it("sends the decorated request, fills res, and calls back on a later tick", function()
    local t = H.new()
    local seen_req, inline, decorator_arg
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp)
      s:read_request(t:cb(function(err, req)
        assert.is_nil(err)
        seen_req = req
        s:accept(req, t:cb(function(err2) assert.is_nil(err2) end))
      end))
    end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp)
      local res = {}
      local returned = false
      ws.handshake_ex(s, res, "example.test:" .. port, "/chat?room=1", function(req)
        decorator_arg = req
        req.headers["User-Agent"] = "mygame/1.0"
        req.headers:add("X-Repeat", "one")
        req.headers:add("X-Repeat", "two")
      end, t:cb(function(err)
        inline = not returned
        assert.is_nil(err)
        assert.equal(101, res.status)
        assert.equal("Switching Protocols", res.reason)
        assert.equal("1.1", res.version)
        assert.equal("websocket", res.headers["upgrade"])
        assert.equal("Upgrade", res.headers["CONNECTION"])
        assert.is_string(res.headers["Sec-WebSocket-Accept"])
        assert.equal("", res.body)
        assert.is_true(s:is_open())
        t:done()
      end))
      returned = true
    end)
    t:run()
    assert.is_false(inline)
    -- The decorator saw Beast's request table.
    assert.equal("GET", decorator_arg.method)
    assert.equal("/chat?room=1", decorator_arg.target)
    assert.equal("1.1", decorator_arg.version)
    -- The server saw the fields as written, case and repeats kept.
    assert.equal("/chat?room=1", seen_req.target)
    assert.equal("example.test:" .. port, seen_req.headers.Host)
    assert.equal("mygame/1.0", seen_req.headers["user-agent"])
    assert.same({ "one", "two" }, seen_req.headers:values("x-repeat"))
    local names = {}
    for name in pairs(seen_req.headers) do names[#names + 1] = name end
    assert.same({ "Host", "Upgrade", "Connection", "Sec-WebSocket-Key",
      "Sec-WebSocket-Version", "User-Agent", "X-Repeat", "X-Repeat" }, names)
    assert.equal("13", seen_req.headers["sec-websocket-version"])
  end)

  it("declined: upgrade_declined with status, headers and body in res, on a later tick", function()
    local t = H.new()
    local inline, server_err
    local _, port = t:ws_server({ want_errors = true, decorator = function(res)
      res.status = 403
      res.reason = "Forbidden"
      res.body = "no entry"
      res.headers["X-Why"] = "banned"
    end }, function(_, err) server_err = err end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp)
      local res = {}
      local returned = false
      ws.handshake_ex(s, res, "127.0.0.1", "/", nil, t:cb(function(err)
        inline = not returned
        assert.equal("upgrade_declined", err)
        assert.equal("handshake_failed", ws.condition(err))
        assert.equal(403, res.status)
        assert.equal("Forbidden", res.reason)
        assert.equal("no entry", res.body)
        assert.equal("banned", res.headers["x-why"])
        assert.is_nil(res.headers["Sec-WebSocket-Accept"])
        assert.is_false(s:is_open())
        t:done()
      end))
      returned = true
    end)
    t:run()
    assert.is_false(inline)
    assert.equal("upgrade_declined", server_err)
  end)

  it("fails at once (closed stream) on a later tick, never inside the call", function()
    local t = H.new()
    local _, port = t:listen(function() end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp)
      tcp:close()
      local returned, inline = false, nil
      ws.handshake_ex(s, {}, "h", "/", nil, t:cb(function(err)
        inline = not returned
        assert.equal("operation_aborted", err)
        t:done()
      end))
      returned = true
      t:after(500, function() if inline == nil then error("never called") end end)
    end)
    t:run()
  end)

  it("a decorator that raises gives bad_decorator later and leaves the stream closed", function()
    local t = H.new()
    local got_eof = false
    local _, port = t:listen(function(tcp)
      local r = t:raw(tcp)
      r.on_eof = function() got_eof = true end
    end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp)
      local returned, inline = false, nil
      ws.handshake_ex(s, {}, "h", "/", function() error("boom") end, t:cb(function(err)
        inline = not returned
        assert.equal("bad_decorator", err)
        assert.is_false(s:is_open())
        assert.is_true(tcp:is_closing())
        t:when(function() return got_eof end, function() t:done() end)
      end))
      returned = true
      assert.is_false(inline == true)
    end)
    t:run()
    assert.is_true(got_eof)
  end)

  for _, field in ipairs({ "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version" }) do
    it("a decorator that changes " .. field .. " gives bad_decorator", function()
      local t = H.new()
      local _, port = t:listen(function() end)
      t:connect(port, function(tcp)
        local s = ws.stream(tcp)
        ws.handshake_ex(s, {}, "h", "/", function(req)
          req.headers[field] = "changed"
        end, t:cb(function(err)
          assert.equal("bad_decorator", err)
          t:done()
        end))
      end)
      t:run()
    end)
  end

  it("a decorator that injects CR LF into a field gives bad_decorator", function()
    local t = H.new()
    local _, port = t:listen(function() end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp)
      ws.handshake_ex(s, {}, "h", "/", function(req)
        req.headers["X-Evil"] = "a\r\nInjected: yes"
      end, t:cb(function(err)
        assert.equal("bad_decorator", err)
        t:done()
      end))
    end)
    t:run()
  end)

  it("runs the decorator option first, then the per-call decorator", function()
    local t = H.new()
    local order = {}
    local _, port = t:ws_server({}, function() end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp, { decorator = function(req)
        order[#order + 1] = "option"
        req.headers["X-A"] = "1"
      end })
      ws.handshake_ex(s, {}, "h", "/", function(req)
        order[#order + 1] = "call:" .. req.headers["X-A"]
      end, t:cb(function(err)
        assert.is_nil(err)
        t:done()
      end))
    end)
    t:run()
    assert.same({ "option", "call:1" }, order)
  end)

  it("handshake without res still works, and a second handshake is operation_in_progress", function()
    local t = H.new()
    local _, port = t:ws_server({}, function() end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp)
      local results = {}
      ws.handshake(s, "h", "/", t:cb(function(err) results[#results + 1] = err or "ok" end))
      s:handshake("h", "/", t:cb(function(err)
        results[#results + 1] = err
      end))
      t:when(function() return #results == 2 end, function()
        table.sort(results)
        assert.same({ "ok", "operation_in_progress" }, results)
        t:done()
      end)
    end)
    t:run()
  end)
end)

describe("client response checks", function()
  -- A raw server that answers the upgrade with a response built from the
  -- request's key by make(key_accept).
  local function serve(t, make)
    return t:listen(function(tcp)
      local r = t:raw(tcp)
      r.on_data = function()
        local key = r.data:match("Sec%-WebSocket%-Key: ([^\r]+)\r\n")
        if key and r.data:find("\r\n\r\n", 1, true) and not r.answered then
          r.answered = true
          -- Compute the accept value with a luvws server-side helper: a
          -- real luvws server answers a copy of the request on a side pair.
          r:write(make(key, r))
        end
      end
    end)
  end

  -- The accept value for key, computed independently with the openssl
  -- command (SHA-1 + base64), so the test does not trust our own code.
  local function accept_of(key)
    local p = io.popen("printf '%s' '" .. key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11' | openssl sha1 -binary | openssl base64")
    local out = p:read("l")
    p:close()
    return out
  end

  local function response(status_line, fields)
    return status_line .. "\r\n" .. table.concat(fields, "\r\n") .. (#fields > 0 and "\r\n" or "") .. "\r\n"
  end

  local cases = {
    { "no_connection", function(k) return response("HTTP/1.1 101 Switching Protocols",
      { "Upgrade: websocket", "Sec-WebSocket-Accept: " .. accept_of(k) }) end },
    { "no_connection_upgrade", function(k) return response("HTTP/1.1 101 Switching Protocols",
      { "Upgrade: websocket", "Connection: keep-alive", "Sec-WebSocket-Accept: " .. accept_of(k) }) end },
    { "no_upgrade", function(k) return response("HTTP/1.1 101 Switching Protocols",
      { "Connection: Upgrade", "Sec-WebSocket-Accept: " .. accept_of(k) }) end },
    { "no_upgrade_websocket", function(k) return response("HTTP/1.1 101 Switching Protocols",
      { "Upgrade: h2c", "Connection: Upgrade", "Sec-WebSocket-Accept: " .. accept_of(k) }) end },
    { "no_sec_accept", function() return response("HTTP/1.1 101 Switching Protocols",
      { "Upgrade: websocket", "Connection: Upgrade" }) end },
    { "bad_sec_accept", function() return response("HTTP/1.1 101 Switching Protocols",
      { "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" }) end },
    { "bad_http_version", function(k) return response("HTTP/1.0 101 Switching Protocols",
      { "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: " .. accept_of(k) }) end },
    { "bad_subprotocol", function(k) return response("HTTP/1.1 101 Switching Protocols",
      { "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: " .. accept_of(k),
        "Sec-WebSocket-Protocol: never-offered" }) end },
    { "bad_extension", function(k) return response("HTTP/1.1 101 Switching Protocols",
      { "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: " .. accept_of(k),
        "Sec-WebSocket-Extensions: permessage-deflate" }) end },
    { "header_too_large", function(k) return response("HTTP/1.1 101 Switching Protocols",
      { "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: " .. accept_of(k),
        "X-Big: " .. string.rep("a", 9000) }) end },
    { "bad_http_head", function() return "HTTP/1.1 101 Switching Protocols\r\nUpgrade websocket\r\n\r\n" end },
  }

  for _, case in ipairs(cases) do
    local name, make = case[1], case[2]
    it("reports " .. name .. " and closes the connection", function()
      local t = H.new()
      local _, port = serve(t, make)
      t:connect(port, function(tcp)
        local s = ws.stream(tcp)
        local res = {}
        ws.handshake_ex(s, res, "h", "/", nil, t:cb(function(err)
          assert.equal(name, err)
          assert.equal("handshake_failed", ws.condition(err))
          assert.is_false(s:is_open())
          assert.is_true(tcp:is_closing())
          if name ~= "bad_http_head" and name ~= "header_too_large" then
            assert.equal(101, res.status)
          end
          t:done()
        end))
      end)
      t:run()
    end)
  end

  it("accepts a faithful raw server and reads the frames that follow the 101", function()
    local t = H.new()
    local _, port = serve(t, function(k)
      return response("HTTP/1.1 101 Switching Protocols",
        { "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: " .. accept_of(k) })
        .. H.frame({ payload = "first" }) .. H.frame({ opcode = 2, payload = "\1\2" })
    end)
    t:connect(port, function(tcp)
      local s = ws.stream(tcp)
      s:handshake("h", "/", t:cb(function(err)
        assert.is_nil(err)
        s:read(t:cb(function(err1, d1, text1)
          assert.is_nil(err1)
          assert.equal("first", d1)
          assert.is_true(text1)
          s:read(t:cb(function(err2, d2, text2)
            assert.is_nil(err2)
            assert.equal("\1\2", d2)
            assert.is_false(text2)
            t:done()
          end))
        end))
      end))
    end)
    t:run()
  end)

  it("reads a declined response's body by Content-Length, chunked, or to EOF", function()
    for _, body_case in ipairs({
      { "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here!", "not here!" },
      { "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwho \r\n7\r\nare you\r\n0\r\n\r\n", "who are you" },
      { "HTTP/1.1 503 Service Unavailable\r\n\r\nbusy, try later", "busy, try later", true },
    }) do
      local t = H.new()
      local _, port = serve(t, function(_, r)
        if body_case[3] then
          uv.timer_start(uv.new_timer(), 20, 0, function() r.tcp:close() end)
        end
        return body_case[1]
      end)
      t:connect(port, function(tcp)
        local s = ws.stream(tcp)
        local res = {}
        s:handshake(res, "h", "/", t:cb(function(err)
          assert.equal("upgrade_declined", err)
          assert.equal(body_case[2], res.body)
          t:done()
        end))
      end)
      t:run()
    end
  end)
end)

describe("accept", function()
  local function raw_request(t, request, check)
    local _, port = t:ws_server({ want_errors = true }, function(s, err)
      check.server_err = err
      check.server_stream = s
    end)
    t:connect(port, function(tcp)
      local r = t:raw(tcp)
      r.on_eof = function()
        check.response = r.data
        t:done()
      end
      r:write(request)
    end)
  end

  local base = {
    "GET / HTTP/1.1", "Host: h", "Upgrade: websocket", "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
  }
  local function req(edit)
    local lines = {}
    for i, l in ipairs(base) do lines[i] = l end
    edit(lines)
    local out = {}
    for _, l in ipairs(lines) do if l ~= false then out[#out + 1] = l end end
    return table.concat(out, "\r\n") .. "\r\n\r\n"
  end

  -- Beast's order and answers; every case also closes the connection.
  local cases = {
    { "bad_http_version", 400, function(l) l[1] = "GET / HTTP/1.0" end },
    { "bad_method", 400, function(l) l[1] = "POST / HTTP/1.1" end },
    { "no_host", 400, function(l) l[2] = false end },
    { "no_connection", 400, function(l) l[4] = false end },
    { "no_connection_upgrade", 400, function(l) l[4] = "Connection: keep-alive" end },
    { "no_upgrade", 400, function(l) l[3] = false end },
    { "no_upgrade_websocket", 400, function(l) l[3] = "Upgrade: h2c" end },
    { "no_sec_key", 400, function(l) l[5] = false end },
    { "bad_sec_key", 400, function(l) l[5] = "Sec-WebSocket-Key: !!" end },
    { "bad_sec_key", 400, function(l) l[5] = "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAAAA" end },
    { "no_sec_version", 400, function(l) l[6] = false end },
    { "bad_sec_version", 426, function(l) l[6] = "Sec-WebSocket-Version: 8" end },
    -- First failure in Beast's order wins.
    { "bad_method", 400, function(l) l[1] = "PUT / HTTP/1.1"; l[2] = false; l[6] = false end },
  }
  for _, case in ipairs(cases) do
    local name, status, edit = case[1], case[2], case[3]
    it(("answers %s with %d, the message as body, and closes"):format(name, status), function()
      local t = H.new()
      local check = {}
      raw_request(t, req(edit), check)
      t:run()
      assert.equal(name, check.server_err)
      local code, rest = check.response:match("^HTTP/1%.%d (%d%d%d) [^\r]*\r\n(.*)$")
      assert.equal(status, tonumber(code))
      local body = rest:match("\r\n\r\n(.*)$")
      assert.equal(ws.errors[name], body)
      assert.truthy(rest:find("Content-Length: " .. #body, 1, true))
      if status == 426 then
        assert.truthy(rest:find("Sec-WebSocket-Version: 13", 1, true))
      end
      assert.is_false(check.server_stream:is_open())
    end)
  end

  it("answers a head past max_header_bytes with 431 and header_too_large", function()
    local t = H.new()
    local check = {}
    raw_request(t, req(function(l) l[#l + 1] = "X-Big: " .. string.rep("b", 9000) end), check)
    t:run()
    assert.equal("header_too_large", check.server_err)
    assert.truthy(check.response:match("^HTTP/1%.1 431 "))
  end)

  it("accepts bytes already read, and a request table from read_request", function()
    local t = H.new()
    local opened = 0
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp)
      -- Read the first bytes ourselves, then hand them to accept.
      tcp:read_start(t:cb(function(err, chunk)
        assert.is_nil(err)
        tcp:read_stop()
        s:accept(chunk, t:cb(function(err2)
          assert.is_nil(err2)
          opened = opened + 1
          s:read(t:cb(function(_, data)
            assert.equal("after", data)
            opened = opened + 1
          end))
        end))
      end))
    end)
    t:ws_client(port, {}, function(c)
      c:write("after", t:cb(function(err) assert.is_nil(err) end))
    end)
    local _, port2 = t:listen(function(tcp)
      local s = ws.stream(tcp)
      s:read_request(t:cb(function(err, req)
        assert.is_nil(err)
        assert.equal("/path", req.target)
        s:accept_ex(req, function(res)
          res.headers["X-Routed"] = "yes"
        end, t:cb(function(err2)
          assert.is_nil(err2)
          opened = opened + 1
        end))
      end))
    end)
    t:ws_client(port2, { target = "/path" }, function(_, res)
      assert.equal("yes", res.headers["x-routed"])
      opened = opened + 1
    end)
    t:when(function() return opened == 4 end, function() t:done() end)
    t:run()
  end)

  it("respond() answers a plain HTTP request and closes", function()
    local t = H.new()
    local _, port = t:listen(function(tcp)
      local s = ws.stream(tcp)
      s:read_request(t:cb(function(err, req)
        assert.is_nil(err)
        assert.equal("/index.html", req.target)
        s:respond({ status = 200, headers = { ["Content-Type"] = "text/html" }, body = "<p>hi</p>" },
          t:cb(function(err2) assert.is_nil(err2) end))
      end))
    end)
    t:connect(port, function(tcp)
      local r = t:raw(tcp)
      r.on_eof = function()
        assert.truthy(r.data:match("^HTTP/1%.1 200 OK\r\n"))
        assert.truthy(r.data:find("Content-Type: text/html\r\n", 1, true))
        assert.truthy(r.data:find("Content-Length: 9\r\n", 1, true))
        assert.equal("<p>hi</p>", r.data:match("\r\n\r\n(.*)$"))
        t:done()
      end
      r:write("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    end)
    t:run()
  end)
end)

describe("subprotocols", function()
  it("the server picks its most preferred one that the client offered", function()
    local t = H.new()
    local server_status
    local _, port = t:ws_server({ options = { subprotocols = { "v3", "v2", "v1" } } }, function(s)
      server_status = s:get_status()
    end)
    t:ws_client(port, { options = { subprotocols = { "v1", "v2" } } }, function(c, res)
      assert.equal("v2", res.headers["Sec-WebSocket-Protocol"])
      assert.equal("v2", c:get_status().subprotocol)
      t:when(function() return server_status end, function()
        assert.equal("v2", server_status.subprotocol)
        t:done()
      end)
    end)
    t:run()
  end)

  it("a chooser function gets the offer; nil means none; raising is bad_decorator", function()
    for _, case in ipairs({
      { function(offer) assert.same({ "a", "b" }, offer) return "b" end, "b" },
      { function() return nil end, nil },
      { function() error("nope") end, "bad_decorator" },
      { function() return "zzz" end, "bad_subprotocol" },
    }) do
      local t = H.new()
      local server_err
      local _, port = t:ws_server({ want_errors = true, options = { subprotocols = case[1] } },
        function(_, err) server_err = err end)
      t:ws_client(port, { want_errors = true, options = { subprotocols = { "a", "b" } } },
        function(c, res, err)
          if case[2] == "bad_decorator" or case[2] == "bad_subprotocol" then
            assert.equal("upgrade_declined", err)
            t:when(function() return server_err end, function()
              assert.equal(case[2], server_err)
              t:done()
            end)
          else
            assert.is_nil(err)
            assert.equal(case[2], c:get_status().subprotocol)
            assert.equal(case[2], res.headers["Sec-WebSocket-Protocol"])
            t:done()
          end
        end)
      t:run()
    end
  end)
end)
