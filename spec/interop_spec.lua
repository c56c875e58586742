-- Interop with real peers nobody here wrote (spec/peers/README.md): Python's
-- websockets 10.4 and Node's ws 8.23, in both directions: a luvws client
-- against their servers, their clients against a luvws server.
--
-- The file loops over PEERS x VARIANTS. A variant is a transport
-- configuration; only plain ws:// is here. To add wss:// or compression,
-- append a variant that sets what differs:
--   scheme             "wss"
--   host               the host name the client asks for (the name the cert holds)
--   connect_host       the address it connects to, if host is not one
--   peer_server_args   e.g. { "--tls", cert, key } or { "--compress", "on" }
--   peer_client_args   e.g. { "--ca", ca } or { "--compress", "on" }
--   client_options     ws.stream options of our client (permessage_deflate ...)
--   server_options     ws.stream options of our server
--   client_layer(t, tcp)  the next layer for our client's ws.stream (ws.tls.wrap ...)
--   server_layer(t, tcp)  the same for our server
-- and give a peer quirk a field in PEERS when its behaviour differs.
local H = require "helper"
local P = require "peer"
local ws = H.ws

local MiB = 1024 * 1024
local BIG = 16 * MiB

local PLAIN = {
  name = "ws://",
  scheme = "ws",
  host = "127.0.0.1",
  peer_server_args = {},
  peer_client_args = {},
  client_options = {},
  server_options = {},
  client_layer = function(_, tcp) return tcp end,
  server_layer = function(_, tcp) return tcp end,
}

-- Certificates for the wss:// variant, made now (at load time) and removed
-- when the file's tests are over (see the end of the file).
local CERTS = H.make_certs()
local SERVER_TLS = assert(ws.tls.context({ role = "server", cert = CERTS .. "server.pem", key = CERTS .. "server.key" }))
local CLIENT_TLS = assert(ws.tls.context({ ca = CERTS .. "ca.pem" }))

local WSS = {
  name = "wss://",
  scheme = "wss",
  host = "localhost",        -- the name in the certificate (Host, SNI)
  connect_host = "127.0.0.1",
  peer_server_args = { "--tls", CERTS .. "server.pem", CERTS .. "server.key" },
  peer_client_args = { "--ca", CERTS .. "ca.pem" },
  client_options = {},
  server_options = {},
  client_layer = function(_, tcp) return ws.tls.wrap(tcp, CLIENT_TLS, { servername = "localhost" }) end,
  server_layer = function(_, tcp) return ws.tls.wrap(tcp, SERVER_TLS) end,
}

local DEFLATE = {
  name = "ws:// with permessage-deflate",
  scheme = "ws",
  host = "127.0.0.1",
  peer_server_args = { "--compress", "on" },
  peer_client_args = { "--compress", "on" },
  client_options = { permessage_deflate = { client_enable = true } },
  server_options = { permessage_deflate = { server_enable = true } },
  client_layer = function(_, tcp) return tcp end,
  server_layer = function(_, tcp) return tcp end,
}

local VARIANTS = { PLAIN, WSS, DEFLATE }

-- What the peers do differently (see the quirks in spec/peers/README.md).
local PEERS = {
  {
    kind = "python",
    name = "Python websockets 10.4",
    -- The server's pick among subprotocols both sides support: the smallest
    -- client index + server index (offers here avoid ties, whose outcome
    -- depends on Python's set order).
    pick = function(offer, supported)
      local best, best_score
      for ci, p in ipairs(offer) do
        for si, q in ipairs(supported) do
          if p == q and (not best_score or ci + si < best_score) then
            best, best_score = p, ci + si
          end
        end
      end
      return best
    end,
    decline_content_type = "text/plain",
    -- Its client accepts a 101 without a subprotocol when it offered some.
    client_needs_subprotocol = false,
  },
  {
    kind = "node",
    name = "Node ws 8.23",
    -- node_server.js: the first of the client's offer that it supports.
    pick = function(offer, supported)
      for _, p in ipairs(offer) do
        for _, q in ipairs(supported) do
          if p == q then return p end
        end
      end
    end,
    decline_content_type = "text/html",
    -- Its client fails the connection ("Server sent no subprotocol").
    client_needs_subprotocol = true,
  },
}

local function concat(...)
  local out = {}
  for _, list in ipairs({ ... }) do
    for _, v in ipairs(list) do out[#out + 1] = v end
  end
  return out
end

local function merge(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = v end
  for k, v in pairs(b or {}) do out[k] = v end
  return out
end

-- t:run, with the peers' logs in the message when the test fails.
-- logs: list of {peer, mark}.
local function run(t, secs, logs)
  local ok, err = pcall(t.run, t, secs)
  if not ok then
    local parts = { tostring(err) }
    for _, l in ipairs(logs) do parts[#parts + 1] = l[1]:dump(l[2]) end
    error(table.concat(parts, "\n"), 0)
  end
end

-- Bytes as hex (the peer scripts take binary data so; also for messages).
local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local counter = 0
local function unique(prefix)
  counter = counter + 1
  return prefix .. counter
end

-- Our client over variant v: connects, wraps, handshakes; on_open(s, res, err).
local function client(t, v, port, opts, on_open)
  opts = opts or {}
  t:connect(port, function(tcp)
    local s = ws.stream(v.client_layer(t, tcp), merge(v.client_options, opts.options))
    t.streams[#t.streams + 1] = s
    local res = {}
    s:handshake_ex(res, v.host .. ":" .. port, opts.target or "/", opts.decorator,
      t:cb(function(err)
        if err and not opts.want_errors then
          error("handshake failed: " .. tostring(err) .. " status " .. tostring(res.status))
        end
        on_open(s, res, err)
      end))
  end, v.connect_host or v.host)
end

-- Our server over variant v: on_stream(s, err, req) after each accept.
-- opts.read_request: read the request first (on_stream gets it);
-- opts.decorator: accept_ex with that response decorator.
local function server(t, v, opts, on_stream)
  opts = opts or {}
  local _, port = t:listen(function(tcp)
    local s = ws.stream(v.server_layer(t, tcp), merge(v.server_options, opts.options))
    t.streams[#t.streams + 1] = s
    local function after(req)
      return t:cb(function(err)
        if err and not opts.want_errors then
          error("accept failed: " .. tostring(err))
        end
        on_stream(s, err, req)
      end)
    end
    if opts.read_request then
      s:read_request(t:cb(function(err, req)
        assert.is_nil(err)
        s:accept(req, after(req))
      end))
    elseif opts.decorator then
      s:accept_ex(opts.decorator, after())
    else
      s:accept(after())
    end
  end)
  return port
end

-- Reads every message into log.msgs ({data, is_text}), echoing each back,
-- until the stream ends; log.err is the read error. on_msg(data, is_text) may
-- return true to not echo.
local function echo(t, s, log, on_msg)
  s:read(t:cb(function(err, data, is_text)
    if err then
      log.err = err
      return
    end
    log.msgs[#log.msgs + 1] = { data, is_text }
    if not (on_msg and on_msg(data, is_text)) then
      s:write(data, is_text and "text" or "binary", t:cb(function(e) assert.is_nil(e) end))
    end
    echo(t, s, log, on_msg)
  end))
end

-- Asserts that ev is the peer's log of message data (type, length, sha256,
-- and the text itself when short).
local function assert_logged(ev, data, is_text)
  assert.truthy(ev, "the peer did not log the message")
  assert.equal(is_text and "text" or "binary", ev.type)
  assert.equal(#data, ev.length)
  assert.equal(P.sha256(data), ev.sha256)
  if is_text and utf8.len(data) <= 200 then
    assert.equal(data, ev.text)
  end
end

-- Computes the sha256 of every {data, is_text} of list in one openssl run
-- (assert_logged then finds them cached).
local function prefetch_sha256(list)
  local datas = {}
  for i, m in ipairs(list) do datas[i] = m[1] end
  P.sha256_many(datas)
end

local TEXT = "héllo wörld ✓ 🎉 — ünïcödé"
local BYTES = (function()
  local b = {}
  for i = 0, 255 do b[#b + 1] = string.char(i) end
  return table.concat(b)
end)()
local SUPPORTED = { "chat", "superchat", "other" }

for _, peer in ipairs(PEERS) do
  for _, v in ipairs(VARIANTS) do
    -- ------------------------------------------------ luvws client -> peer
    describe(("luvws client -> %s server over %s"):format(peer.name, v.name), function()
      local srv

      lazy_setup(function()
        srv = P.server(peer.kind, concat({ "--subprotocols", table.concat(SUPPORTED, ",") }, v.peer_server_args))
      end)

      lazy_teardown(function()
        if srv then srv:stop() end
      end)

      -- Our client connected; fn(s, res).
      local function open(t, opts, fn)
        client(t, v, srv.port, opts, fn)
      end

      -- Waits until the server logged a message of that type and length
      -- after mark, then calls fn(ev).
      local function when_logged(t, mark, kind, len, fn)
        local pattern = { event = "message", type = kind, length = len }
        t:when(function() return srv:find(pattern, mark) end, function()
          fn(srv:find(pattern, mark))
        end)
      end

      it("text: arrives intact (UTF-8) and the echo comes back", function()
        local t = H.new()
        local mark = srv:mark()
        local got, logged
        open(t, {}, function(s)
          s:write(TEXT, "text", t:cb(function(err) assert.is_nil(err) end))
          s:read(t:cb(function(err, data, is_text)
            assert.is_nil(err)
            got = { data, is_text }
            when_logged(t, mark, "text", #TEXT, function(ev)
              logged = ev
              t:done()
            end)
          end))
        end)
        run(t, 10, { { srv, mark } })
        assert.same({ TEXT, true }, got)
        assert_logged(logged, TEXT, true)
      end)

      it("binary: every byte value arrives and comes back", function()
        local t = H.new()
        local mark = srv:mark()
        local got, logged
        open(t, {}, function(s)
          s:write(BYTES, "binary", t:cb(function(err) assert.is_nil(err) end))
          s:read(t:cb(function(err, data, is_text)
            assert.is_nil(err)
            got = { data, is_text }
            when_logged(t, mark, "binary", 256, function(ev)
              logged = ev
              t:done()
            end)
          end))
        end)
        run(t, 10, { { srv, mark } })
        assert.equal(hex(BYTES), hex(got[1]))
        assert.is_false(got[2])
        assert_logged(logged, BYTES, false)
      end)

      it("empty text and empty binary messages", function()
        local t = H.new()
        local mark = srv:mark()
        local got = {}
        open(t, {}, function(s)
          s:write("", "text", t:cb(function(err) assert.is_nil(err) end))
          s:write("", "binary", t:cb(function(err) assert.is_nil(err) end))
          local function read()
            s:read(t:cb(function(err, data, is_text)
              assert.is_nil(err)
              got[#got + 1] = { data, is_text }
              if #got < 2 then return read() end
              t:when(function() return #srv:select({ event = "message", length = 0 }, mark) == 2 end,
                function() t:done() end)
            end))
          end
          read()
        end)
        run(t, 10, { { srv, mark } })
        assert.same({ { "", true }, { "", false } }, got)
        local evs = srv:select({ event = "message", length = 0 }, mark)
        assert_logged(evs[1], "", true)
        assert_logged(evs[2], "", false)
      end)

      it("100 messages in a row, text and binary, arrive and come back in order", function()
        local t = H.new()
        local mark = srv:mark()
        local sent, got = {}, {}
        for i = 1, 100 do
          sent[i] = { ("message %d %s"):format(i, ("é"):rep(i)), i % 2 == 1 }
        end
        open(t, {}, function(s)
          for _, m in ipairs(sent) do
            s:write(m[1], m[2] and "text" or "binary", t:cb(function(err) assert.is_nil(err) end))
          end
          local function read()
            s:read(t:cb(function(err, data, is_text)
              assert.is_nil(err)
              got[#got + 1] = { data, is_text }
              if #got < #sent then return read() end
              t:when(function() return #srv:select({ event = "message" }, mark) >= #sent end,
                function() t:done() end)
            end))
          end
          read()
        end)
        run(t, 15, { { srv, mark } })
        assert.same(sent, got)
        prefetch_sha256(sent)
        local evs = srv:select({ event = "message" }, mark)
        assert.equal(#sent, #evs)
        for i, m in ipairs(sent) do
          assert_logged(evs[i], m[1], m[2])
        end
      end)

      it("16 MiB binary to the peer: its length and sha256 match, the echo is byte-for-byte", function()
        local t = H.new()
        local mark = srv:mark()
        local big = P.pattern(BIG)
        local got, logged
        open(t, {}, function(s)
          s:write(big, "binary", t:cb(function(err) assert.is_nil(err) end))
          s:read(t:cb(function(err, data, is_text)
            assert.is_nil(err)
            assert.is_false(is_text)
            got = data
            when_logged(t, mark, "binary", BIG, function(ev)
              logged = ev
              t:done()
            end)
          end))
        end)
        run(t, 40, { { srv, mark } })
        assert.equal(BIG, #got)
        assert.is_true(got == big, "the echo differs from what was sent")
        assert_logged(logged, big, false)
      end)

      it("16 MiB binary from the peer (cmd:big) arrives byte-for-byte", function()
        local t = H.new()
        local mark = srv:mark()
        local got
        open(t, {}, function(s)
          s:write("cmd:big:" .. BIG, "text", t:cb(function(err) assert.is_nil(err) end))
          s:read(t:cb(function(err, data, is_text)
            assert.is_nil(err)
            assert.is_false(is_text)
            got = data
            t:done()
          end))
        end)
        run(t, 40, { { srv, mark } })
        assert.equal(BIG, #got)
        assert.is_true(got == P.pattern(BIG), "the message differs from the peer's pattern")
      end)

      it("a message over our read_message_max fails with message_too_big and the peer gets 1009", function()
        local t = H.new()
        local mark = srv:mark()
        local read_err
        open(t, { options = { read_message_max = 1000 } }, function(s)
          s:write("cmd:big:1001", "text", t:cb(function(err) assert.is_nil(err) end))
          s:read(t:cb(function(err)
            read_err = err
            assert.is_false(s:is_open())
            t:when(function() return srv:find({ event = "close" , code = 1009 }, mark) end,
              function() t:done() end)
          end))
        end)
        run(t, 15, { { srv, mark } })
        assert.equal("message_too_big", read_err)
      end)

      it("a fragmented message from the peer (cmd:fragments) is read whole, empty fragments included", function()
        local t = H.new()
        local mark = srv:mark()
        local cases = { { 5, TEXT }, { 6, "abc" }, { 3, "" }, { 1, "one" } }
        local got = {}
        open(t, {}, function(s)
          for _, c in ipairs(cases) do
            s:write(("cmd:fragments:%d:%s"):format(c[1], c[2]), "text", t:cb(function(err) assert.is_nil(err) end))
          end
          local function read()
            s:read(t:cb(function(err, data, is_text)
              assert.is_nil(err)
              got[#got + 1] = { data, is_text }
              assert.is_true(s:is_message_done())
              if #got < #cases then return read() end
              t:done()
            end))
          end
          read()
        end)
        run(t, 10, { { srv, mark } })
        for i, c in ipairs(cases) do
          assert.same({ c[2], true }, got[i])
        end
      end)

      it("read_some sees a fragmented message from the peer in parts, done only at its end", function()
        local t = H.new()
        local mark = srv:mark()
        local text = "abcdefghijklmnopqrstuvwxyz0123456789-" .. TEXT
        local limit = 7
        local parts, dones, kinds = {}, {}, {}
        open(t, {}, function(s)
          s:write("cmd:fragments:4:" .. text, "text", t:cb(function(err) assert.is_nil(err) end))
          local function step()
            s:read_some(limit, t:cb(function(err, data, is_text, done)
              assert.is_nil(err)
              parts[#parts + 1] = data
              dones[#dones + 1] = done
              kinds[#kinds + 1] = is_text
              assert.equal(done, s:is_message_done())
              if done then return t:done() end
              step()
            end))
          end
          step()
        end)
        run(t, 10, { { srv, mark } })
        assert.equal(text, table.concat(parts))
        assert.is_true(#parts >= math.ceil(#text / limit))
        for i, p in ipairs(parts) do
          -- Only the part that ends the message may be empty (the peer's
          -- last frame can be an empty FIN continuation, as Python sends it).
          local min = i == #parts and 0 or 1
          assert.is_true(#p >= min and #p <= limit, ("part %d of %d has %d bytes"):format(i, #parts, #p))
          assert.equal(i == #parts, dones[i])
          assert.is_true(kinds[i])
        end
      end)

      it("our fragmented messages (write_some) reach the peer whole, text and binary", function()
        local t = H.new()
        local mark = srv:mark()
        local text_parts = { "Hel", "", "lo, ", "wörld" }
        local bin_parts = { "\0\1", "\255", "", "\128\127" }
        local text, bin = table.concat(text_parts), table.concat(bin_parts)
        local got = {}
        local logged_text, logged_bin
        open(t, {}, function(s)
          for i, p in ipairs(text_parts) do
            s:write_some(i == #text_parts, p, t:cb(function(err) assert.is_nil(err) end))
          end
          s:read(t:cb(function(err, data, is_text)
            assert.is_nil(err)
            got[1] = { data, is_text }
            s:set_option("binary", true)
            for i, p in ipairs(bin_parts) do
              s:write_some(i == #bin_parts, p, t:cb(function(e) assert.is_nil(e) end))
            end
            s:read(t:cb(function(err2, data2, is_text2)
              assert.is_nil(err2)
              got[2] = { data2, is_text2 }
              when_logged(t, mark, "text", #text, function(ev)
                logged_text = ev
                when_logged(t, mark, "binary", #bin, function(ev2)
                  logged_bin = ev2
                  t:done()
                end)
              end)
            end))
          end))
        end)
        run(t, 10, { { srv, mark } })
        assert.same({ text, true }, got[1])
        assert.same({ bin, false }, got[2])
        assert_logged(logged_text, text, true)
        assert_logged(logged_bin, bin, false)
      end)

      it("a ping between our write_some parts: the peer answers it and gets the message whole", function()
        local t = H.new()
        local mark = srv:mark()
        local seen, got = {}, nil
        open(t, {}, function(s)
          s:control_callback(t:cb(function(kind, data) seen[#seen + 1] = kind .. ":" .. data end))
          s:write_some(false, "ab", t:cb(function(err) assert.is_nil(err) end))
          s:ping("in-between", t:cb(function(err) assert.is_nil(err) end))
          s:write_some(true, "cd", t:cb(function(err) assert.is_nil(err) end))
          s:read(t:cb(function(err, data, is_text)
            assert.is_nil(err)
            got = { data, is_text }
            t:when(function() return #seen == 1 and srv:find({ event = "ping" }, mark) end,
              function() t:done() end)
          end))
        end)
        run(t, 10, { { srv, mark } })
        assert.same({ "abcd", true }, got)
        assert.same({ "pong:in-between" }, seen)
        assert.equal("in-between", srv:find({ event = "ping" }, mark).payload)
        assert_logged(srv:find({ event = "message" }, mark), "abcd", true)
      end)

      local ping_cases = {
        { "a text payload", function() return unique("peer-ping-") end },
        { "an empty payload", function() return "" end },
        { "a 125-byte payload", function() return unique("p-"):rep(60):sub(1, 125) end },
      }
      for _, case in ipairs(ping_cases) do
        it("the peer's ping with " .. case[1] .. " reaches control_callback and the peer gets our pong", function()
          local t = H.new()
          local mark = srv:mark()
          local payload = case[2]()
          local seen = {}
          open(t, {}, function(s)
            s:control_callback(t:cb(function(kind, data) seen[#seen + 1] = kind .. ":" .. data end))
            -- No read pending: pings are answered anyway.
            s:write("cmd:ping:" .. payload, "text", t:cb(function(err) assert.is_nil(err) end))
            t:when(function()
              return #seen > 0 and srv:find({ event = "pong", payload = payload }, mark)
            end, function() t:done() end)
          end)
          run(t, 10, { { srv, mark } })
          assert.same({ "ping:" .. payload }, seen)
        end)
      end

      it("our ping reaches the peer and its pong reaches control_callback; our pong reaches the peer", function()
        local t = H.new()
        local mark = srv:mark()
        local payload = unique("our-ping-")
        local binary_payload = "\0\255\1"
        local pong_payload = unique("our-pong-")
        local seen = {}
        open(t, {}, function(s)
          s:control_callback(t:cb(function(kind, data) seen[#seen + 1] = kind .. ":" .. data end))
          s:ping(payload, t:cb(function(err) assert.is_nil(err) end))
          s:ping(binary_payload, t:cb(function(err) assert.is_nil(err) end))
          s:pong(pong_payload, t:cb(function(err) assert.is_nil(err) end))
          t:when(function()
            return #seen == 2 and srv:find({ event = "pong", payload = pong_payload }, mark)
          end, function() t:done() end)
        end)
        run(t, 10, { { srv, mark } })
        assert.same({ "pong:" .. payload, "pong:" .. binary_payload }, seen)
        local pings = srv:select({ event = "ping" }, mark)
        assert.equal(2, #pings)
        assert.equal(payload, pings[1].payload)
        assert.equal(hex(payload), pings[1].hex)
        assert.is_nil(pings[2].payload) -- not UTF-8
        assert.equal("00ff01", pings[2].hex)
      end)

      local close_cases = {
        { 4001, "bye" },
        { 1000, "" },
        { 4999, "with: colons" },
        { 3000, ("é"):rep(61) .. "x" }, -- 123 bytes, the longest reason
      }
      for _, case in ipairs(close_cases) do
        local ccode, creason = case[1], case[2]
        it(("the peer closes with %d and a %d-byte reason: our read gets closed, reason() gives them"):format(
          ccode, #creason), function()
          local t = H.new()
          local mark = srv:mark()
          local read_err, code, reason, seen
          open(t, {}, function(s)
            s:control_callback(t:cb(function(kind, data) seen = kind .. ":" .. data end))
            s:write(("cmd:close:%d:%s"):format(ccode, creason), "text", t:cb(function(err) assert.is_nil(err) end))
            s:read(t:cb(function(err)
              read_err = err
              code, reason = s:reason()
              assert.is_false(s:is_open())
              t:when(function() return srv:find({ event = "close", code = ccode }, mark) end,
                function() t:done() end)
            end))
          end)
          run(t, 10, { { srv, mark } })
          assert.equal("closed", read_err)
          assert.equal(ccode, code)
          assert.equal(creason, reason)
          assert.equal("close:" .. creason, seen)
          -- Our answer echoes the code, without the reason (as Beast does).
          assert.equal("", srv:find({ event = "close", code = ccode }, mark).reason)
        end)
      end

      it("our close(4002, \"later\") reaches the peer; the close completes with its echo", function()
        local t = H.new()
        local mark = srv:mark()
        local close_err, code, reason, read_err
        open(t, {}, function(s)
          s:read(t:cb(function(err) read_err = err end))
          s:close(4002, "later", t:cb(function(err)
            close_err = err or "ok"
            code, reason = s:reason()
            assert.is_false(s:is_open())
            t:when(function() return read_err and srv:find({ event = "close", code = 4002 }, mark) end,
              function() t:done() end)
          end))
        end)
        run(t, 10, { { srv, mark } })
        assert.equal("ok", close_err)
        assert.equal("closed", read_err)
        local ev = srv:find({ event = "close", code = 4002 }, mark)
        assert.equal("later", ev.reason)
        -- Both peers echo the code and the reason.
        assert.equal(4002, code)
        assert.equal("later", reason)
      end)

      local offers = {
        { "superchat", "x-none", "chat" },
        { "other", "chat" },
        { "nope", "nada" },
      }
      for _, offer in ipairs(offers) do
        local expected = peer.pick(offer, SUPPORTED)
        it(("subprotocols: we offer %s, the peer picks %s, get_status agrees"):format(
          table.concat(offer, ","), tostring(expected)), function()
          local t = H.new()
          local mark = srv:mark()
          local target = unique("/sub?case=")
          local status, res_header
          open(t, { target = target, options = { subprotocols = offer } }, function(s, res)
            status = s:get_status()
            res_header = res.headers["Sec-WebSocket-Protocol"]
            assert.is_true(s:is_open())
            t:when(function() return srv:find({ event = "connection", path = target }, mark) end,
              function() t:done() end)
          end)
          run(t, 10, { { srv, mark } })
          assert.equal(expected, status.subprotocol)
          assert.equal(expected, res_header)
          local ev = srv:find({ event = "connection", path = target }, mark)
          assert.equal(expected, ev.subprotocol)
        end)
      end

      it("request headers from the decorator option and handshake_ex reach the peer (cmd:headers)", function()
        local t = H.new()
        local mark = srv:mark()
        local target = unique("/headers?n=")
        local got
        open(t, {
          target = target,
          options = { decorator = function(req) req.headers["X-From-Option"] = "1" end },
          decorator = function(req)
            req.headers["User-Agent"] = "luvws-interop/1.0"
            req.headers["X-Luvws-Test"] = "yes"
            req.headers:add("X-Repeat", "one")
            req.headers:add("X-Repeat", "two")
          end,
        }, function(s)
          s:write("cmd:headers", "text", t:cb(function(err) assert.is_nil(err) end))
          s:read(t:cb(function(err, data, is_text)
            assert.is_nil(err)
            assert.is_true(is_text)
            got = assert(P.json.decode(data), "not JSON: " .. data)
            t:done()
          end))
        end)
        run(t, 10, { { srv, mark } })
        assert.equal(v.host .. ":" .. srv.port, got.host)
        assert.equal("luvws-interop/1.0", got["user-agent"])
        assert.equal("yes", got["x-luvws-test"])
        assert.equal("1", got["x-from-option"])
        assert.equal("one, two", got["x-repeat"])
        assert.equal("websocket", got.upgrade:lower())
        assert.equal("upgrade", got.connection:lower())
        assert.equal("13", got["sec-websocket-version"])
        assert.is_truthy(srv:find({ event = "connection", path = target }, mark))
      end)
    end)

    describe(("luvws client -> %s server declining the upgrade over %s"):format(peer.name, v.name), function()
      local srv

      lazy_setup(function()
        srv = P.server(peer.kind, concat({ "--decline", "403:forbidden" }, v.peer_server_args))
      end)

      lazy_teardown(function()
        if srv then srv:stop() end
      end)

      it("handshake gets upgrade_declined with the peer's status, reason, headers and body", function()
        local t = H.new()
        local mark = srv:mark()
        local err_, res_, open_
        client(t, v, srv.port, { want_errors = true }, function(s, res, err)
          err_, res_, open_ = err, res, s:is_open()
          t:done()
        end)
        run(t, 10, { { srv, mark } })
        assert.equal("upgrade_declined", err_)
        assert.equal("handshake_failed", ws.condition(err_))
        assert.is_false(open_)
        assert.equal(403, res_.status)
        assert.equal("Forbidden", res_.reason)
        assert.equal("forbidden", res_.body)
        assert.equal("yes", res_.headers["x-declined"])
        assert.equal("9", res_.headers["Content-Length"])
        assert.equal(peer.decline_content_type, res_.headers["content-type"])
        assert.equal("close", res_.headers["Connection"])
        assert.is_nil(res_.headers["Sec-WebSocket-Accept"])
      end)
    end)

    describe(("luvws client -> %s server shutting down over %s"):format(peer.name, v.name), function()
      it("SIGTERM: the peer closes with 1001; our read gets closed and reason() gives 1001", function()
        local t = H.new()
        local srv = P.server(peer.kind, v.peer_server_args)
        finally(function() srv:stop() end)
        local read_err, code
        client(t, v, srv.port, {}, function(s)
          s:read(t:cb(function(err)
            read_err = err
            code = s:reason()
            t:when(function() return srv.done end, function() t:done() end)
          end))
          srv.handle:kill("sigterm")
        end)
        run(t, 15, { { srv } })
        assert.equal("closed", read_err)
        assert.equal(1001, code)
        assert.equal(0, srv.code, srv:dump())
        assert.equal("SIGTERM", srv:find({ event = "exit" }).reason)
        -- It got our answer: a clean close with its code.
        assert.equal(1001, srv:find({ event = "close" }).code)
      end)
    end)

    -- ------------------------------------------------ peer client -> luvws
    describe(("%s client -> luvws server over %s"):format(peer.name, v.name), function()
      after_each(function()
        P.stop_all(function(p) return p.role == "client" end)
      end)

      -- Starts the peer client against our server on port with steps.
      local function peer_client(port, steps, args, path)
        local url = ("%s://%s:%d%s"):format(v.scheme, v.host, port, path or "/")
        return P.client(peer.kind, concat({ "--url", url }, v.peer_client_args, args or {}), steps)
      end

      it("text (UTF-8), binary, empty text and empty binary: each arrives and the echo reaches the peer", function()
        local t = H.new()
        local log, code, reason = { msgs = {} }, nil, nil
        local cli
        local port = server(t, v, {}, function(s)
          echo(t, s, log)
          t:when(function() return log.err and cli.done end, function()
            code, reason = s:reason()
            t:done()
          end)
        end)
        cli = peer_client(port, {
          { send = "text", data = TEXT }, { expect = "message" },
          { send = "binary", hex = hex(BYTES) }, { expect = "message" },
          { send = "text", data = "" }, { expect = "message" },
          { send = "binary", hex = "" }, { expect = "message" },
        })
        run(t, 15, { { cli } })
        assert.equal(0, cli.code, cli:dump())
        assert.same({ { TEXT, true }, { BYTES, false }, { "", true }, { "", false } }, log.msgs)
        assert.equal("closed", log.err)
        assert.equal(1000, code)
        assert.equal("", reason)
        local msgs = cli:select({ event = "message" })
        assert.equal(4, #msgs)
        assert_logged(msgs[1], TEXT, true)
        assert_logged(msgs[2], BYTES, false)
        assert_logged(msgs[3], "", true)
        assert_logged(msgs[4], "", false)
        assert.equal(1000, cli:find({ event = "close" }).code)
      end)

      it("50 messages in a row from the peer arrive and come back in order", function()
        local t = H.new()
        local log = { msgs = {} }
        local cli
        local steps, sent = {}, {}
        for i = 1, 50 do
          sent[i] = { ("msg %d %s"):format(i, ("ü"):rep(i)), i % 3 ~= 0 }
          if sent[i][2] then
            steps[#steps + 1] = { send = "text", data = sent[i][1] }
          else
            steps[#steps + 1] = { send = "binary", hex = hex(sent[i][1]) }
          end
        end
        for _ = 1, 50 do steps[#steps + 1] = { expect = "message" } end
        local port = server(t, v, {}, function(s)
          echo(t, s, log)
          t:when(function() return log.err and cli.done end, function() t:done() end)
        end)
        cli = peer_client(port, steps)
        run(t, 15, { { cli } })
        assert.equal(0, cli.code, cli:dump())
        assert.same(sent, log.msgs)
        prefetch_sha256(sent)
        local evs = cli:select({ event = "message" })
        assert.equal(#sent, #evs)
        for i, m in ipairs(sent) do
          assert_logged(evs[i], m[1], m[2])
        end
      end)

      it("16 MiB binary from the peer arrives byte-for-byte; the echo's length and sha256 match at the peer", function()
        local t = H.new()
        local log = { msgs = {} }
        local cli
        local port = server(t, v, {}, function(s)
          echo(t, s, log)
          t:when(function() return cli.done end, function() t:done() end)
        end)
        cli = peer_client(port, { { send = "binary", size = BIG }, { expect = "message" } })
        run(t, 40, { { cli } })
        assert.equal(0, cli.code, cli:dump())
        local big = P.pattern(BIG)
        assert.equal(BIG, #log.msgs[1][1])
        assert.is_true(log.msgs[1][1] == big, "the message differs from the peer's pattern")
        assert.is_false(log.msgs[1][2])
        assert_logged(cli:find({ event = "message" }), big, false)
      end)

      it("a message over the peer's max size: the peer fails with 1009 and our read sees it", function()
        local t = H.new()
        local log = { msgs = {} }
        local cli, code
        local port = server(t, v, {}, function(s)
          echo(t, s, log, function()
            s:write(("x"):rep(2000), "binary", t:cb(function() end))
            return true
          end)
          t:when(function() return log.err and cli.done end, function()
            code = s:reason()
            t:done()
          end)
        end)
        cli = peer_client(port, { { send = "text", data = "too big please" }, { expect = "message" } },
          { "--max-size", "1000" })
        run(t, 20, { { cli } })
        assert.equal(1, cli.code, cli:dump())
        assert.is_truthy(cli:find({ event = "error" }), cli:dump())
        assert.equal("closed", log.err)
        assert.equal(1009, code)
      end)

      it("a fragmented message from the peer is read whole; our write_some message reaches it whole", function()
        local t = H.new()
        local log = { msgs = {} }
        local cli
        local parts = { "one ", "", "two ", "thrée" }
        local port = server(t, v, {}, function(s)
          echo(t, s, log, function(data)
            if data == "fragments please" then
              for i, p in ipairs(parts) do
                s:write_some(i == #parts, p, t:cb(function(err) assert.is_nil(err) end))
              end
              return true
            end
          end)
          t:when(function() return log.err and cli.done end, function() t:done() end)
        end)
        cli = peer_client(port, {
          { send = "fragments", parts = { "Hel", "lo, ", "wörld" } }, { expect = "message" },
          { send = "fragments", parts = { "", "x", "" } }, { expect = "message" },
          { send = "text", data = "fragments please" }, { expect = "message" },
        })
        run(t, 15, { { cli } })
        assert.equal(0, cli.code, cli:dump())
        assert.same({ { "Hello, wörld", true }, { "x", true }, { "fragments please", true } }, log.msgs)
        local msgs = cli:select({ event = "message" })
        assert.equal(3, #msgs)
        assert_logged(msgs[1], "Hello, wörld", true)
        assert_logged(msgs[2], "x", true)
        assert_logged(msgs[3], table.concat(parts), true)
      end)

      it("read_some reads a fragmented message from the peer in parts, done only at its end", function()
        local t = H.new()
        local pieces, dones = {}, {}
        local cli
        local text = "abcdefghijklmnopqrstuvwxyz"
        local port = server(t, v, {}, function(s)
          local function step()
            s:read_some(5, t:cb(function(err, data, is_text, done)
              assert.is_nil(err)
              assert.is_true(is_text)
              pieces[#pieces + 1] = data
              dones[#dones + 1] = done
              if not done then return step() end
              s:write(table.concat(pieces), "text", t:cb(function(e) assert.is_nil(e) end))
              t:when(function() return cli.done end, function() t:done() end)
            end))
          end
          step()
        end)
        cli = peer_client(port, { { send = "fragments", parts = { "abcdefgh", "ijklmnop", "qrstuvwxyz" } },
          { expect = "message" } })
        run(t, 15, { { cli } })
        assert.equal(0, cli.code, cli:dump())
        assert.equal(text, table.concat(pieces))
        for i, p in ipairs(pieces) do
          local min = i == #pieces and 0 or 1
          assert.is_true(#p >= min and #p <= 5, ("piece %d of %d has %d bytes"):format(i, #pieces, #p))
          assert.equal(i == #pieces, dones[i])
        end
        assert_logged(cli:find({ event = "message" }), text, true)
      end)

      it("pings both ways: the peer's ping gets our pong, our ping gets the peer's pong", function()
        local t = H.new()
        local seen, close_err = {}, nil
        local cli
        local port = server(t, v, {}, function(s)
          s:control_callback(t:cb(function(kind, data)
            seen[#seen + 1] = kind .. ":" .. data
            if kind == "pong" then
              s:close(1000, "pinged", t:cb(function(err) close_err = err or "ok" end))
            end
          end))
          echo(t, s, { msgs = {} }, function(data)
            if data == "ping me" then
              s:ping("from-luvws", t:cb(function(err) assert.is_nil(err) end))
              return true
            end
          end)
          t:when(function() return close_err and cli.done end, function() t:done() end)
        end)
        cli = peer_client(port, { { ping = "from-peer" }, { send = "text", data = "ping me" }, { wait_close = true } })
        run(t, 15, { { cli } })
        assert.equal(0, cli.code, cli:dump())
        -- Then the peer's answer to our close.
        assert.same({ "ping:from-peer", "pong:from-luvws", "close:pinged" }, seen)
        assert.equal("ok", close_err)
        assert.equal("from-peer", cli:find({ event = "pong" }).payload)
        assert.equal("from-luvws", cli:find({ event = "ping" }).payload)
        local ev = cli:find({ event = "close" })
        assert.equal(1000, ev.code)
        assert.equal("pinged", ev.reason)
      end)

      it("the peer closes with 4002 \"later\": our read gets closed and reason() gives them", function()
        local t = H.new()
        local log, code, reason = { msgs = {} }, nil, nil
        local cli
        local port = server(t, v, {}, function(s)
          echo(t, s, log)
          t:when(function() return log.err and cli.done end, function()
            code, reason = s:reason()
            t:done()
          end)
        end)
        cli = peer_client(port, { { close = 4002, reason = "later" } })
        run(t, 15, { { cli } })
        assert.equal(0, cli.code, cli:dump())
        assert.equal("closed", log.err)
        assert.equal(4002, code)
        assert.equal("later", reason)
        -- Our echo: the code, no reason (as Beast does).
        local ev = cli:find({ event = "close" })
        assert.equal(4002, ev.code)
        assert.equal("", ev.reason)
      end)

      it("our close(4001, \"bye\") reaches the peer; the close completes with its echo", function()
        local t = H.new()
        local close_err, code, reason
        local cli
        local port = server(t, v, {}, function(s)
          s:close(4001, "bye", t:cb(function(err)
            close_err = err or "ok"
            code, reason = s:reason()
            t:when(function() return cli.done end, function() t:done() end)
          end))
        end)
        cli = peer_client(port, { { wait_close = true } })
        run(t, 15, { { cli } })
        assert.equal(0, cli.code, cli:dump())
        assert.equal("ok", close_err)
        assert.equal(4001, code)
        assert.equal("bye", reason)
        local ev = cli:find({ event = "close" })
        assert.equal(4001, ev.code)
        assert.equal("bye", ev.reason)
      end)

      local sub_cases = {
        { "a preference list", { "chat", "superchat" }, "other,superchat,chat", "chat" },
        { "a chooser function", "fn", "other,superchat,chat", "superchat" },
      }
      for _, case in ipairs(sub_cases) do
        local what, option, offer, expected = case[1], case[2], case[3], case[4]
        it(("subprotocols: our server picks from the peer's offer with %s"):format(what), function()
          local t = H.new()
          local status, offered
          local cli
          local sub = option
          if option == "fn" then
            sub = function(list)
              offered = list
              return list[2]
            end
          end
          local port = server(t, v, { options = { subprotocols = sub } }, function(s)
            status = s:get_status()
            t:when(function() return cli.done end, function() t:done() end)
          end)
          cli = peer_client(port, {}, { "--subprotocols", offer })
          run(t, 15, { { cli } })
          assert.equal(0, cli.code, cli:dump())
          assert.equal(expected, status.subprotocol)
          assert.equal(expected, cli:find({ event = "open" }).subprotocol)
          if option == "fn" then
            assert.same({ "other", "superchat", "chat" }, offered)
          end
        end)
      end

      it("subprotocols: no overlap gives no subprotocol" ..
        (peer.client_needs_subprotocol and " (and this peer refuses that)" or ""), function()
        local t = H.new()
        local status
        local cli
        local port = server(t, v, { options = { subprotocols = { "chat" } } }, function(s)
          status = s:get_status()
          t:when(function() return cli.done end, function() t:done() end)
        end)
        cli = peer_client(port, {}, { "--subprotocols", "x,y" })
        run(t, 15, { { cli } })
        assert.is_nil(status.subprotocol)
        if peer.client_needs_subprotocol then
          assert.equal(1, cli.code, cli:dump())
          assert.is_nil(cli:find({ event = "open" }))
          assert.equal("Server sent no subprotocol", cli:find({ event = "error" }).message)
        else
          assert.equal(0, cli.code, cli:dump())
          local ev = cli:find({ event = "open" })
          assert.truthy(ev, cli:dump())
          assert.is_nil(ev.subprotocol)
        end
      end)

      it("the peer's target and request headers reach our server", function()
        local t = H.new()
        local req_
        local cli
        local port = server(t, v, { read_request = true }, function(_, _, req)
          req_ = req
          t:when(function() return cli.done end, function() t:done() end)
        end)
        cli = peer_client(port, {}, {
          "--header", "X-Luvws-Test: yes", "--header", "X-Repeat: one", "--header", "X-Repeat: two",
        }, "/room?id=7")
        run(t, 15, { { cli } })
        assert.equal(0, cli.code, cli:dump())
        assert.equal(101, cli:find({ event = "open" }).status)
        assert.equal("GET", req_.method)
        assert.equal("/room?id=7", req_.target)
        assert.equal("yes", req_.headers["x-luvws-test"])
        assert.same({ "one", "two" }, req_.headers:values("X-Repeat"))
        assert.equal(v.host .. ":" .. port, req_.headers.host)
        assert.equal("13", req_.headers["Sec-WebSocket-Version"])
      end)

      it("an accept_ex decorator declines the upgrade: the peer gets our status, headers and body", function()
        local t = H.new()
        local accept_err
        local cli
        local port = server(t, v, { want_errors = true, decorator = function(res)
          res.status = 403
          res.body = "forbidden"
          res.headers["X-Why"] = "banned"
        end }, function(_, err)
          accept_err = err
          t:when(function() return cli.done end, function() t:done() end)
        end)
        cli = peer_client(port, {})
        run(t, 15, { { cli } })
        assert.equal("upgrade_declined", accept_err)
        assert.equal(1, cli.code, cli:dump())
        local ev = cli:find({ event = "rejected" })
        assert.truthy(ev, cli:dump())
        assert.equal(403, ev.status)
        assert.equal("forbidden", ev.body)
        assert.equal("banned", ev.headers["x-why"])
        assert.is_nil(cli:find({ event = "open" }))
      end)
    end)
  end
end

-- ------------------------------------------- what each variant negotiated
for _, peer in ipairs(PEERS) do
  describe(("negotiation with %s"):format(peer.name), function()
    it("our client gets TLS from its wss server, and permessage-deflate when both enable it", function()
      for _, v in ipairs({ WSS, DEFLATE }) do
        local srv = P.server(peer.kind, v.peer_server_args)
        local t = H.new()
        client(t, v, srv.port, {}, function(s, res)
          if v == WSS then
            assert.truthy(s:get_status().tls.version:match("^TLSv1%.[23]$"))
          else
            local st = s:get_status().permessage_deflate
            assert.is_table(st)
            assert.truthy(res.headers["sec-websocket-extensions"]:find("permessage-deflate", 1, true))
          end
          s:write(("compressible "):rep(500), t:cb(function(e) assert.is_nil(e) end))
          s:read(t:cb(function(e, data)
            assert.is_nil(e)
            assert.equal(("compressible "):rep(500), data)
            t:done()
          end))
        end)
        run(t, 10, { { srv, 0 } })
        srv:stop()
      end
    end)

    it("its client gets permessage-deflate from our server and says so", function()
      local t = H.new()
      local seen
      local port = server(t, DEFLATE, {}, function(s)
        seen = s:get_status().permessage_deflate
        echo(t, s, { msgs = {} })
      end)
      local cl = P.client(peer.kind, concat({ "--url", "ws://127.0.0.1:" .. port .. "/" }, DEFLATE.peer_client_args),
        { { send = "text", data = ("abc"):rep(400) }, { expect = "message" } })
      t:when(function() return cl:find({ event = "open" }) and cl:find({ event = "message" }) end, function()
        assert.is_table(seen)
        local open = cl:find({ event = "open" })
        assert.truthy(tostring(open.extensions):find("permessage-deflate", 1, true), tostring(open.extensions))
        t:done()
      end)
      run(t, 10, { { cl, 0 } })
    end)
  end)
end

describe("interop certificates", function()
  it("are removed", function()
    H.remove_dir(CERTS)
    assert.is_nil(io.open(CERTS .. "ca.pem"))
  end)
end)
