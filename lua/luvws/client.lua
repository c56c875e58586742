-- ws.connect(url [, options], cb(err, stream, res)): DNS, TCP (with
-- TCP_NODELAY), TLS for wss:// (SNI and verification on), the upgrade, all
-- inside the handshake timeout. With options.reconnect it keeps a
-- connection up: see connect_forever.
local uv = require "luv"
local core = require "luvws.core"
local url = require "luvws.url"
local headers = require "luvws.headers"

local M = {}

-- One default client TLS context (the system CA store) per Lua state:
-- loading the store costs milliseconds, so it is built once.
local default_tls

local function tls_context(opt)
  if opt == nil or opt == true then
    if not default_tls then
      local ctx, msg = core.tls.context({})
      if not ctx then
        return nil, msg
      end
      default_tls = ctx
    end
    return default_tls
  end
  if type(opt) == "table" and getmetatable(opt) == nil then
    return core.tls.context(opt)
  end
  return opt -- a context made with ws.tls.context
end

-- Options that are stream options (passed to ws.stream as they are).
local stream_options = {
  read_message_max = true, write_buffer_bytes = true, auto_fragment = true,
  binary = true, compress = true, secure_prng = true, max_header_bytes = true,
  max_queued_bytes = true, max_unread_bytes = true, timeout = true,
  decorator = true, subprotocols = true, permessage_deflate = true,
}

local connect_options = {
  headers = true, origin = true, tls = true, servername = true, reconnect = true,
  on_reconnect = true, family = true, compression = true,
}

-- Raises (at the caller of ws.connect) for an option that does not exist.
function M.check_options(options, level)
  for k in pairs(options) do
    if not stream_options[k] and not connect_options[k] then
      error(("ws.connect: unknown option '%s'"):format(tostring(k)), level + 1)
    end
  end
  -- A TLS option table is turned into a context now, so that a missing
  -- file or a bad PEM is reported with its message, at the call.
  if type(options.tls) == "table" and getmetatable(options.tls) == nil then
    local ctx, msg = core.tls.context(options.tls)
    if not ctx then
      error("ws.connect: tls: " .. msg, level + 1)
    end
    options.tls = ctx
  end
end

local function copy_options(options)
  local out = {}
  for k, v in pairs(options) do
    if stream_options[k] then
      out[k] = v
    end
  end
  if out.timeout == nil then
    out.timeout = { handshake = 30, idle = false, keep_alive_pings = false, close = 5 }
  end
  if options.compression and out.permessage_deflate == nil then
    out.permessage_deflate = require("luvws.server").compression_options(options.compression, "client_enable")
  end
  -- `compress` is the per-message default of Beast; `compression = true`
  -- asks for permessage-deflate.
  return out
end

-- Tries each address in turn until one connects.
local function tcp_connect(addrs, i, on_done)
  local a = addrs[i]
  if not a then
    return on_done("ECONNREFUSED")
  end
  local tcp = uv.new_tcp()
  local ok, err = tcp:connect(a.addr, a.port, function(cerr)
    if cerr then
      tcp:close()
      if addrs[i + 1] then
        return tcp_connect(addrs, i + 1, on_done)
      end
      return on_done(cerr)
    end
    tcp:nodelay(true)
    on_done(nil, tcp)
  end)
  if not ok then
    tcp:close()
    return on_done(err and err:match("^(%w+)") or "EINVAL")
  end
  return tcp
end

-- Connects once. cb(err, stream, res); never called inside this call.
local function connect_once(u, options, cb)
  local sopts = copy_options(options)
  local deadline = sopts.timeout.handshake
  local done, timer, tcp, stream = false, nil, nil, nil
  local started = uv.now()

  local function finish(err, s, res)
    if done then
      return
    end
    done = true
    if timer then
      timer:stop()
      timer:close()
    end
    if err and not s then
      if tcp and not tcp:is_closing() then
        tcp:close()
      end
    end
    cb(err, s, res)
  end

  if deadline and deadline > 0 then
    timer = uv.new_timer()
    timer:start(math.floor(deadline * 1000), 0, function()
      if stream then
        return -- the stream's own handshake timeout takes over
      end
      finish("timeout")
    end)
    timer:unref()
  end

  local ctx, tls_err
  if u.secure then
    ctx, tls_err = tls_context(options.tls)
    if not ctx then
      -- A bad TLS option is reported like any other failure, later.
      local t = uv.new_timer()
      t:start(0, 0, function()
        t:close()
        finish(tls_err:match("^(%w+)") or "EINVAL")
      end)
      return
    end
  end

  uv.getaddrinfo(u.host, tostring(u.port), { socktype = "stream", family = options.family }, function(err, addrs)
    if done then
      return
    end
    if err then
      return finish(err)
    end
    tcp = tcp_connect(addrs, 1, function(cerr, c)
      if done then
        if c then c:close() end
        return
      end
      if cerr then
        tcp = nil
        return finish(cerr)
      end
      tcp = c
      -- What is left of the handshake timeout covers TLS and the upgrade.
      if deadline and deadline > 0 then
        local left = deadline - (uv.now() - started) / 1000
        sopts.timeout = {
          handshake = math.max(left, 0.001), idle = sopts.timeout.idle,
          keep_alive_pings = sopts.timeout.keep_alive_pings, close = sopts.timeout.close,
        }
      end
      local layer = c
      if u.secure then
        layer = core.tls.wrap(c, ctx, { servername = options.servername or u.host })
      end
      stream = core.stream(layer, sopts)
      local res = {}
      local extra, origin = options.headers, options.origin
      stream:handshake_ex(res, u.host_header, u.target, function(req)
        if origin then
          req.headers["Origin"] = origin
        end
        if extra then
          for name, value in pairs(headers.is(extra) and extra or extra) do
            req.headers:set(name, value)
          end
        end
      end, function(herr)
        if herr then
          return finish(herr, nil, res)
        end
        finish(nil, stream, res)
      end)
    end)
  end)
end

-- Keeps a connection up: on_open(nil, stream, res) for every connection
-- made; after a failure or a close, waits (exponential backoff with jitter:
-- min, then * factor, up to max) and tries again. options.on_reconnect(
-- attempt, delay, err) is called before each wait. Returns a handle with
-- :close() to stop (and close the current stream).
local function connect_forever(u, options, on_open)
  local r = options.reconnect
  local min = r.min or 0.5
  local max = r.max or 30
  local factor = r.factor or 2
  local jitter = r.jitter == nil and 0.2 or r.jitter
  assert(min > 0 and max >= min and factor >= 1, "reconnect: need 0 < min <= max and factor >= 1")
  local state = { closed = false, attempt = 0, stream = nil, timer = uv.new_timer() }
  state.timer:unref()
  local delay = min

  local dial

  local function again(err)
    if state.closed then
      return
    end
    state.attempt = state.attempt + 1
    local d = delay * (1 + jitter * (2 * math.random() - 1))
    delay = math.min(delay * factor, max)
    if options.on_reconnect then
      options.on_reconnect(state.attempt, d, err)
    end
    state.timer:ref()
    state.timer:start(math.floor(d * 1000), 0, function()
      state.timer:unref()
      dial()
    end)
  end

  function dial()
    if state.closed then
      return
    end
    connect_once(u, options, function(err, stream, res)
      if state.closed then
        if stream then stream:close(1000, "", function() end) end
        return
      end
      if err then
        return again(err)
      end
      delay = min
      state.attempt = 0
      state.stream = stream
      M.watch_end(stream, function(end_err)
        if state.stream == stream then
          state.stream = nil
        end
        again(end_err)
      end)
      on_open(nil, stream, res)
    end)
  end

  dial()
  local handle = {}
  function handle.close()
    if state.closed then
      return
    end
    state.closed = true
    state.timer:stop()
    state.timer:close()
    if state.stream and state.stream:is_open() then
      state.stream:close(1000, "", function() end)
    end
  end
  function handle.stream()
    return state.stream
  end
  return handle
end

M.connect_once = connect_once
M.connect_forever = connect_forever
M.parse_url = url.parse
-- Set by init.lua: calls fn(err) once when the stream ends.
M.watch_end = nil

return M
