-- luvws: WebSocket (RFC 6455, RFC 7692) for Lua 5.4 on luv.
--
-- Low level (Beast's websocket::stream): ws.stream, handshake,
-- handshake_ex, accept, accept_ex, read, read_some, write, write_some,
-- ping, pong, close, ... (C, luvws.core). High level: ws.connect(url),
-- ws.server{...}, stream:messages(), stream:on(event, fn), topics.
-- doc/reference.md lists every function and option.

local core = require "luvws.core"
local client = require "luvws.client"
local server = require "luvws.server"

local ws = {}
for k, v in pairs(core) do
  if k:sub(1, 1) ~= "_" then
    ws[k] = v
  end
end

ws.headers = require "luvws.headers"
ws.url = require "luvws.url"

ws.timeout = {}

-- Beast's timeout::suggested(role), plus luvws's close timeout.
function ws.timeout.suggested(role)
  if role == "client" then
    return { handshake = 30, idle = false, keep_alive_pings = false, close = 5 }
  elseif role == "server" then
    return { handshake = 30, idle = 300, keep_alive_pings = true, close = 5 }
  end
  error("role must be \"client\" or \"server\"", 2)
end

-- The stream methods written in Lua go into the same method table as the
-- C ones, so stream:on(...) and ws.on(stream, ...) both work.
local methods = debug.getregistry()["luvws.stream"].methods

-- ------------------------------------------------------------- events

-- Per stream: handlers and whether the read loop runs (weak keys).
local events = setmetatable({}, { __mode = "k" })

local function start_events(stream, ev)
  if ev.reading then
    return
  end
  ev.reading = true
  local function on_message(err, data, is_text)
    if err then
      ev.reading = false
      local h = ev.close
      if h then
        local code, reason = stream:reason()
        h(code, reason, err)
      end
      return
    end
    local h = ev.message
    if h then
      h(data, is_text)
    end
    if ev.reading then
      stream:read(on_message)
    end
  end
  stream:read(on_message)
end

-- stream:on(event, fn): "message" fn(data, is_text); "close" fn(code,
-- reason, err) once (err is "closed" after a clean close); "ping" and
-- "pong" fn(payload). Registering message or close starts a read loop (so
-- read() then gets operation_in_progress: use one style or the other).
-- fn nil removes the handler.
function methods.on(stream, event, fn)
  if fn ~= nil and type(fn) ~= "function" then
    error("on: a function expected", 2)
  end
  local ev = events[stream]
  if not ev then
    ev = {}
    events[stream] = ev
  end
  if event == "message" or event == "close" then
    ev[event] = fn
    if fn then
      start_events(stream, ev)
    end
  elseif event == "ping" or event == "pong" then
    ev[event] = fn
    if ev.ping or ev.pong then
      stream:control_callback(function(kind, payload)
        if kind == "ping" or kind == "pong" then
          local h = ev[kind]
          if h then
            h(payload)
          end
        end
      end)
    else
      stream:control_callback(nil)
    end
  else
    error(("on: unknown event '%s' (message, close, ping, pong)"):format(tostring(event)), 2)
  end
  return stream
end

-- for data, is_text in stream:messages() do ... end (inside a coroutine):
-- reads until the stream ends; stream:reason() then tells why.
function methods.messages(stream)
  if not coroutine.isyieldable() then
    error("stream:messages() waits for messages: call it inside a coroutine", 2)
  end
  return function()
    local data, is_text = stream:read()
    if data == nil then
      return nil
    end
    return data, is_text
  end
end

methods.subscribe = server.subscribe
methods.unsubscribe = server.unsubscribe

for _, name in ipairs({ "on", "messages", "subscribe", "unsubscribe" }) do
  ws[name] = methods[name]
end

-- ---------------------------------------------------------- ws.connect

client.watch_end = core._on_end

-- ws.connect(url [, options], cb(err, stream, res)). In a coroutine, without
-- cb: returns stream, res or nil, "name: message", "name", res. With
-- options.reconnect = {min, max, factor, jitter}, cb runs for every
-- connection made and the result is a handle with :close().
function ws.connect(url, options, cb)
  if type(options) == "function" then
    options, cb = nil, options
  end
  options = options or {}
  local u, msg = ws.url.parse(url)
  if not u then
    error("ws.connect: " .. msg, 2)
  end
  if type(options) ~= "table" then
    error("ws.connect: options must be a table", 2)
  end
  local copy = {} -- check_options may replace tls: leave the caller's table alone
  for k, v in pairs(options) do
    copy[k] = v
  end
  options = copy
  client.check_options(options, 2)
  if options.reconnect then
    if type(cb) ~= "function" then
      error("ws.connect with reconnect needs a callback", 2)
    end
    return client.connect_forever(u, options, cb)
  end
  if cb == nil then
    if not coroutine.isyieldable() then
      error("ws.connect: a callback is required outside a coroutine", 2)
    end
    local co = coroutine.running()
    client.connect_once(u, options, function(err, stream, res)
      local ok, rerr
      if err then
        ok, rerr = coroutine.resume(co, nil, err .. ": " .. (core.errors[err] or err), err, res)
      else
        ok, rerr = coroutine.resume(co, stream, res)
      end
      if not ok then
        error(rerr, 0)
      end
    end)
    return coroutine.yield()
  end
  if type(cb) ~= "function" then
    error("ws.connect: cb must be a function", 2)
  end
  client.connect_once(u, options, cb)
end

-- ----------------------------------------------------------- ws.server

ws.server = server.new

return ws
