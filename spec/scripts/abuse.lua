-- Failure paths for valgrind: declined upgrades, bad requests, protocol
-- errors, timeouts, resets mid-message and mid-close, abandoned streams.
-- Prints "done N" when every scenario has finished.
local uv = require "luv"
local ws = require "luvws"

local pending = 0
local function begin() pending = pending + 1 end
local function finish()
  pending = pending - 1
  if pending == 0 then print("done") end
end

local function listen(on_tcp)
  local l = uv.new_tcp()
  assert(l:bind("127.0.0.1", 0))
  l:listen(64, function()
    local c = uv.new_tcp()
    l:accept(c)
    on_tcp(c)
  end)
  return l, l:getsockname().port
end

local function connect(port, fn)
  local c = uv.new_tcp()
  c:connect("127.0.0.1", port, function(err) assert(not err, err); fn(c) end)
end

local listeners = {}
local function closing(l) listeners[#listeners + 1] = l end

-- 1. A server that declines; a client that reads the decline.
do
  local l, port = listen(function(tcp)
    local s = ws.stream(tcp)
    s:accept_ex(function(res) res.status = 403; res.body = "no" end, function() end)
  end)
  closing(l)
  begin()
  connect(port, function(tcp)
    local s = ws.stream(tcp)
    s:handshake({}, "h", "/", function(err) assert(err == "upgrade_declined"); finish() end)
  end)
end

-- 2. Bad requests: garbage, a huge head, a reset mid-head.
do
  local l, port = listen(function(tcp)
    local s = ws.stream(tcp, { timeout = { handshake = 0.3 } })
    s:accept(function() finish() end)
  end)
  closing(l)
  for _, bytes in ipairs({ "garbage\r\n\r\n", "GET / HTTP/1.1\r\nX: " .. ("a"):rep(10000) .. "\r\n\r\n", "GET / HT" }) do
    begin()
    connect(port, function(tcp)
      tcp:write(bytes)
      local t = uv.new_timer()
      t:start(50, 0, function() t:close(); tcp:close() end)
    end)
  end
end

-- 3. Protocol errors and a message too big, then a reset mid-message.
do
  local l, port = listen(function(tcp)
    local s = ws.stream(tcp, { read_message_max = 100 })
    s:accept(function(err)
      if err then return finish() end
      s:read(function() finish() end)
    end)
  end)
  closing(l)
  local req = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
  for _, frame in ipairs({ "\x83\x80abcd", "\x82\xfe\x10\x00abcd", "\x81\x85abcd" }) do
    begin()
    connect(port, function(tcp)
      tcp:write(req .. frame)
      local t = uv.new_timer()
      t:start(80, 0, function() t:close(); tcp:close() end)
    end)
  end
end

-- 4. Timeouts: handshake, idle, close; then abandoned streams.
do
  local l, port = listen(function(tcp)
    tcp:read_start(function(err, data) if err or not data then tcp:close() end end)
  end)
  closing(l)
  begin()
  connect(port, function(tcp)
    local s = ws.stream(tcp, { timeout = { handshake = 0.2 } })
    s:handshake("h", "/", function(err) assert(err == "timeout"); finish() end)
  end)
  local l2, port2 = listen(function(tcp)
    local s = ws.stream(tcp, { timeout = { idle = 0.2, keep_alive_pings = true } })
    s:accept(function() s:read(function() end) end)
  end)
  closing(l2)
  -- A peer that completes the upgrade and then answers nothing: the
  -- server's idle timer (with pings) ends it.
  begin()
  connect(port2, function(tcp)
    tcp:write("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    tcp:read_start(function(err, data) if not data then tcp:close(); finish() end end)
  end)
  for i = 1, 2 do
    begin()
    connect(port2, function(tcp)
      local s = ws.stream(tcp, { timeout = { close = 0.2 } })
      s:handshake("h", "/", function(err)
        assert(not err, err)
        if i == 1 then
          s:write(("q"):rep(100000), function() end)
          s:close(1000, "bye", function() finish() end)
        else
          -- Abandon it: __gc closes it in the background.
          s = nil
          collectgarbage()
          finish()
        end
      end)
    end)
  end
end

-- 5. A peer that vanishes mid-close: it drops TCP when our close arrives.
do
  local l, port = listen(function(tcp)
    local got = ""
    tcp:read_start(function(err, data)
      if not data then return tcp:close() end
      got = got .. data
      if got:find("\r\n\r\n", 1, true) and not got:find("answered", 1, true) then
        local key = got:match("Sec%-WebSocket%-Key: ([^\r]+)")
        local p = io.popen("printf '%s' '" .. key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11' | openssl sha1 -binary | openssl base64")
        local accept = p:read("l")
        p:close()
        tcp:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
          "Sec-WebSocket-Accept: " .. accept .. "\r\n\r\n")
        got = got .. "answered"
      elseif got:find("answered", 1, true) and #got > 200 then
        tcp:close()
      end
    end)
  end)
  closing(l)
  begin()
  connect(port, function(tcp)
    local s = ws.stream(tcp, { timeout = { close = 0.3 } })
    s:handshake("h", "/", function(err)
      assert(not err, err)
      s:close(1000, ("bye"):rep(40), function(e)
        assert(e == "EOF" or e == "ECONNRESET", e)
        finish()
      end)
    end)
  end)
end

local t = uv.new_timer()
t:start(100, 100, function()
  collectgarbage() -- lets the abandoned stream be collected (and closed)
  if pending <= 0 then
    t:close()
    for _, l in ipairs(listeners) do l:close() end
  end
end)
uv.run()
collectgarbage()
uv.run()
print("pending " .. pending)
