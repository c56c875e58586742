-- ws.server{...}: a listening WebSocket server with plain HTTP on the same
-- port, connection and handshake limits, an Origin allow-list, topics
-- (publish/subscribe with the frame built once), and graceful shutdown.
local uv = require "luv"
local core = require "luvws.core"
local headers = require "luvws.headers"

local M = {}

local Server = {}
Server.__index = Server
Server.__name = "luvws.server"

-- The server a stream belongs to, and the topics it joined (weak keys:
-- nothing here keeps a stream alive).
local server_of = setmetatable({}, { __mode = "k" })
local topics_of = setmetatable({}, { __mode = "k" })

local options_known = {
  host = true, port = true, tls = true, path = true, subprotocols = true,
  protocols = true, origins = true, max_connections = true,
  handshake_timeout = true, on_upgrade = true, on_connection = true,
  on_request = true, options = true, compression = true, log = true,
  backlog = true, slow_subscriber = true, close_timeout = true,
  idle_timeout = true, keep_alive_pings = true,
}

local function log_default(msg)
  io.stderr:write(msg, "\n")
end

-- Runs fn(...) in a coroutine; an error is logged with its traceback and
-- on_error(err) runs (the handler's stream is closed with 1011).
local function isolated(self, on_error, fn, ...)
  local co = coroutine.create(function(...)
    local ok, err = xpcall(fn, debug.traceback, ...)
    if not ok then
      self.log("luvws server: handler error: " .. tostring(err))
      if on_error then
        on_error(err)
      end
    end
  end)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    self.log("luvws server: handler error: " .. tostring(err))
  end
end

local function is_upgrade(req)
  local up = req.headers["upgrade"]
  local conn = req.headers["connection"]
  if not up or not conn then
    return false
  end
  local has_ws, has_up = false, false
  for token in up:gmatch("[^,%s]+") do
    if token:lower() == "websocket" then has_ws = true end
  end
  for token in conn:gmatch("[^,%s]+") do
    if token:lower() == "upgrade" then has_up = true end
  end
  return has_ws and has_up
end

local function path_of(target)
  return (target:match("^([^?]*)"))
end

local function origin_allowed(self, req)
  if not self._origins then
    return true
  end
  local origin = req.headers["origin"]
  if origin == nil then
    return true -- not a browser: the allow-list protects browsers' users
  end
  origin = origin:lower()
  for _, allowed in ipairs(self._origins) do
    if allowed:lower() == origin then
      return true
    end
  end
  return false
end

local function respond(stream, status, body, fields)
  local res = { status = status, headers = headers.new(fields or {}), body = body or "" }
  if not res.headers["content-type"] and res.body ~= "" then
    res.headers["Content-Type"] = "text/plain; charset=utf-8"
  end
  stream:respond(res, function() end)
end

function Server:_forget(stream)
  if self._conns[stream] then
    self._conns[stream] = nil
    self._count = self._count - 1
  end
  self:_unsubscribe_all(stream)
  if self._closing and self._count == 0 and self._on_drained then
    local f = self._on_drained
    self._on_drained = nil
    f()
  end
end

function Server:_upgrade(stream, req)
  local ok, status, body, fields = true, nil, nil, nil
  if self.path and path_of(req.target) ~= self.path then
    return respond(stream, 404, "no WebSocket endpoint here")
  end
  if not origin_allowed(self, req) then
    return respond(stream, 403, "origin not allowed")
  end
  if self._on_upgrade then
    local pok, a, b, c = pcall(self._on_upgrade, req)
    if not pok then
      self.log("luvws server: on_upgrade error: " .. tostring(a))
      return respond(stream, 500, "internal error")
    end
    if a ~= true then
      ok, status, body, fields = false, tonumber(a) or 403, b, c
    end
  end
  if not ok then
    return respond(stream, status, body or "", fields)
  end
  stream:accept(req, function(err)
    if err then
      return
    end
    if self._on_connection then
      isolated(self, function()
        if stream:is_open() then
          stream:close(1011, "internal error", function() end)
        end
      end, self._on_connection, stream, req)
    end
  end)
end

function Server:_request(stream, req)
  local res = { status = 404, headers = headers.new(), body = "not found" }
  if not self._on_request then
    return respond(stream, 404, "not found")
  end
  isolated(self, function()
    respond(stream, 500, "internal error")
  end, function()
    res.status = 200
    res.body = ""
    self._on_request(req, res)
    if type(res.headers) == "table" and not headers.is(res.headers) then
      res.headers = headers.new(res.headers)
    end
    res.body = res.body or ""
    if not res.headers["content-type"] and res.body ~= "" then
      res.headers["Content-Type"] = "text/plain; charset=utf-8"
    end
    stream:respond(res, function() end)
  end)
end

function Server:_on_tcp(tcp)
  tcp:nodelay(true)
  local layer = tcp
  if self.tls then
    layer = core.tls.wrap(tcp, self.tls)
  end
  local stream = core.stream(layer, self._stream_options)
  self._conns[stream] = true
  self._count = self._count + 1
  server_of[stream] = self
  core._on_end(stream, function()
    self:_forget(stream)
  end)
  stream:read_request(function(err, req)
    if err then
      return
    end
    if self._closing then
      return respond(stream, 503, "server is shutting down", { ["Retry-After"] = "5" })
    end
    if self._count > self._max_connections then
      return respond(stream, 503, "too many connections", { ["Retry-After"] = "5" })
    end
    if is_upgrade(req) then
      self:_upgrade(stream, req)
    else
      self:_request(stream, req)
    end
  end)
end

-- The number of connections and a list of them (a copy).
function Server:connections()
  local list = {}
  for s in pairs(self._conns) do
    list[#list + 1] = s
  end
  return list, #list
end

-- Publishes data to every stream subscribed to topic, except `except`.
-- The frame is built once and shared (no copy per recipient); a recipient
-- whose queue is already full is closed with 1008 (or skipped, with
-- slow_subscriber = "skip"). Returns the number of recipients queued.
function Server:publish(topic, data, kind, except)
  if type(kind) ~= "string" then
    kind, except = nil, kind
  end
  local set = self._topics[topic]
  if not set then
    return 0
  end
  local is_text = kind ~= "binary"
  if kind ~= nil and kind ~= "text" and kind ~= "binary" then
    error("publish: kind must be \"text\" or \"binary\"", 2)
  end
  local n, slow = core._publish(set, data, is_text, except)
  if slow and self._slow_subscriber ~= "skip" then
    for _, stream in ipairs(slow) do
      stream:close(1008, "too slow", function() end)
      self:_unsubscribe_all(stream)
    end
  end
  return n
end

function Server:_unsubscribe_all(stream)
  local mine = topics_of[stream]
  if not mine then return end
  for topic in pairs(mine) do
    local set = self._topics[topic]
    if set then
      set[stream] = nil
      if next(set) == nil then self._topics[topic] = nil end
    end
  end
  topics_of[stream] = nil
end

-- Stops listening, closes every connection with 1001, waits for their
-- closes up to timeout seconds (default 5), then drops what is left.
-- cb() when done (optional; in a coroutine, waits).
function Server:close(timeout, cb)
  if type(timeout) == "function" then
    timeout, cb = nil, timeout
  end
  timeout = timeout or 5
  local co, waiting, finished_early = nil, false, false
  if not cb and coroutine.isyieldable() then
    co = coroutine.running()
    cb = function()
      if waiting then
        assert(coroutine.resume(co))
      else
        finished_early = true
      end
    end
  end
  local function wait()
    if co and not finished_early then
      waiting = true
      return coroutine.yield()
    end
  end
  if self._closing then
    if cb then
      local t = uv.new_timer()
      t:start(0, 0, function() t:close(); cb() end)
    end
    return wait()
  end
  self._closing = true
  if not self._listener:is_closing() then
    self._listener:close()
  end
  local timer = uv.new_timer()
  local finished = false
  local function finish()
    if finished then return end
    finished = true
    timer:stop()
    timer:close()
    for s in pairs(self._conns) do
      core._abort(s)
    end
    if cb then cb() end
  end
  self._on_drained = finish
  timer:start(math.floor(timeout * 1000), 0, finish)
  local any = false
  for s in pairs(self._conns) do
    any = true
    local state = s:get_status().state
    if state == "open" then
      s:close(1001, "server shutting down", function() end)
    elseif state ~= "closing" and state ~= "closed" then
      core._abort(s) -- still in its handshake (or an HTTP exchange)
    end -- a closing stream ends by itself, within its close timeout
  end
  if not any then
    self._on_drained = nil
    finish()
  end
  return wait()
end

-- Stream methods: topics.
function M.subscribe(stream, topic)
  local self = server_of[stream]
  if not self then
    error("subscribe: the stream does not belong to a ws.server", 2)
  end
  if not stream:is_open() then
    return false
  end
  local set = self._topics[topic]
  if not set then
    set = {}
    self._topics[topic] = set
  end
  set[stream] = true
  local mine = topics_of[stream]
  if not mine then
    mine = {}
    topics_of[stream] = mine
  end
  mine[topic] = true
  return true
end

function M.unsubscribe(stream, topic)
  local self = server_of[stream]
  if not self then
    error("unsubscribe: the stream does not belong to a ws.server", 2)
  end
  local set = self._topics[topic]
  if set then
    set[stream] = nil
    if next(set) == nil then
      self._topics[topic] = nil
    end
  end
  local mine = topics_of[stream]
  if mine then
    mine[topic] = nil
  end
  return true
end

-- The permessage_deflate option for `compression = true` (or a table of
-- permessage_deflate fields) in ws.connect and ws.server: enable is
-- "client_enable" or "server_enable". Level 3 by default there: Beast's 8
-- costs 4-6x the CPU with context takeover for a few points of ratio.
function M.compression_options(compression, enable)
  local p = { [enable] = true, comp_level = 3 }
  if type(compression) == "table" then
    for k, v in pairs(compression) do
      p[k] = v
    end
  end
  return p
end

-- ws.server{...} -> server | nil, "name: message", "name"
function M.new(opts)
  if type(opts) ~= "table" then
    error("ws.server expects a table of options", 2)
  end
  for k in pairs(opts) do
    if not options_known[k] then
      error(("ws.server: unknown option '%s'"):format(tostring(k)), 2)
    end
  end
  local self = setmetatable({
    _conns = {}, _count = 0, _topics = {}, _closing = false,
    path = opts.path, _origins = opts.origins,
    _max_connections = opts.max_connections or 10000,
    _on_upgrade = opts.on_upgrade, _on_connection = opts.on_connection,
    _on_request = opts.on_request, log = opts.log or log_default,
    _slow_subscriber = opts.slow_subscriber or "close",
  }, Server)
  local sopts = {}
  for k, v in pairs(opts.options or {}) do
    sopts[k] = v
  end
  if sopts.timeout == nil then
    sopts.timeout = {
      handshake = opts.handshake_timeout or 30,
      idle = opts.idle_timeout == nil and 300 or opts.idle_timeout,
      keep_alive_pings = opts.keep_alive_pings ~= false,
      close = opts.close_timeout or 5,
    }
  end
  local sub = opts.subprotocols or opts.protocols
  if sub ~= nil then
    sopts.subprotocols = sub
  end
  if opts.compression and sopts.permessage_deflate == nil then
    sopts.permessage_deflate = M.compression_options(opts.compression, "server_enable")
  end
  self._stream_options = sopts
  if opts.tls then
    if getmetatable(opts.tls) == nil then
      local t = {}
      for k, v in pairs(opts.tls) do t[k] = v end
      t.role = "server"
      local ctx, msg, name = core.tls.context(t)
      if not ctx then
        return nil, msg, name
      end
      self.tls = ctx
    else
      self.tls = opts.tls
    end
  end
  local host = opts.host or "127.0.0.1"
  local listener = uv.new_tcp()
  local ok, err = listener:bind(host, opts.port or 0)
  if ok then
    ok, err = listener:listen(opts.backlog or 511, function(lerr)
      if lerr or self._closing then
        return
      end
      local tcp = uv.new_tcp()
      if listener:accept(tcp) then
        self:_on_tcp(tcp)
      else
        tcp:close()
      end
    end)
  end
  if not ok then
    listener:close()
    local name = tostring(err):match("^(%w+)") or "EINVAL"
    return nil, name .. ": " .. (core.errors[name] or tostring(err)), name
  end
  self._listener = listener
  local addr = listener:getsockname()
  self.host, self.port = addr.ip, addr.port
  self.url = (self.tls and "wss" or "ws") .. "://" ..
    (addr.ip:find(":", 1, true) and ("[" .. addr.ip .. "]") or addr.ip) .. ":" .. addr.port ..
    (opts.path or "/")
  return self
end

return M
