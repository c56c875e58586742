-- Test helpers for luvws specs: run the luv loop with a deadline, catch
-- errors raised inside callbacks (luv would otherwise exit the process),
-- make loopback pairs, raw TCP peers, and frames by hand.
local uv = require "luv"
local ws = require "luvws"

local H = {}

local T = {}
T.__index = T

-- A test context: t:cb(fn) wraps callbacks, t:done() ends t:run().
function H.new()
  return setmetatable({ handles = {}, streams = {}, finished = false }, T)
end

function T:fail(msg)
  if not self.err then
    self.err = msg
  end
  uv.stop()
end

-- Wraps fn so that an error inside it fails the test instead of the process.
function T:cb(fn)
  return function(...)
    local ok, err = xpcall(fn, debug.traceback, ...)
    if not ok then
      self:fail(err)
    end
  end
end

-- Runs fn in a coroutine (for the coroutine API); errors fail the test.
function T:co(fn, ...)
  local co = coroutine.create(function(...)
    local ok, err = xpcall(fn, debug.traceback, ...)
    if not ok then
      self:fail(err)
    end
  end)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    self:fail(err)
  end
  return co
end

function T:done()
  self.finished = true
  uv.stop()
end

function T:track(h)
  self.handles[#self.handles + 1] = h
  return h
end

-- Runs the loop until t:done(), an error, or secs seconds; then closes the
-- handles the test tracked and lets their close callbacks run.
function T:run(secs)
  secs = secs or 5
  local timer = uv.new_timer()
  local timed_out = false
  timer:start(math.floor(secs * 1000), 0, function()
    timed_out = true
    uv.stop()
  end)
  while not (self.finished or self.err or timed_out) do
    uv.run("once")
    if not uv.loop_alive() then
      break
    end
  end
  timer:stop()
  timer:close()
  for _, p in ipairs(self.procs or {}) do
    if not p:is_closing() then
      p:kill("sigterm")
    end
  end
  for _, h in ipairs(self.handles) do
    if h.is_closing and not h:is_closing() then
      h:close()
    end
  end
  for _, s in ipairs(self.streams) do
    local ok, tcp = pcall(s.next_layer, s)
    if ok and tcp and tcp.is_closing and not tcp:is_closing() then
      tcp:close()
    end
  end
  -- Let close callbacks and posted completions run (bounded).
  local drain = uv.new_timer()
  drain:start(50, 0, function() uv.stop() end)
  uv.run()
  drain:close()
  uv.run("nowait")
  if self.err then
    error(self.err, 0)
  end
  if timed_out and not self.finished then
    error(("timed out after %gs"):format(secs), 0)
  end
end

-- Runs the loop for ms milliseconds (for things that must NOT happen).
function H.wait(ms)
  local timer = uv.new_timer()
  timer:start(ms, 0, function() uv.stop() end)
  uv.run()
  timer:close()
  uv.run("nowait")
end

-- A listening TCP socket on 127.0.0.1; on_conn(tcp) for every accepted
-- connection. Returns the listener and its port.
function T:listen(on_conn)
  local server = self:track(uv.new_tcp())
  assert(server:bind("127.0.0.1", 0))
  assert(server:listen(128, self:cb(function(err)
    assert(not err, err)
    local c = self:track(uv.new_tcp())
    server:accept(c)
    on_conn(c)
  end)))
  return server, server:getsockname().port
end

-- Connects a TCP socket to port; on_connect(tcp).
function T:connect(port, on_connect, host)
  local c = self:track(uv.new_tcp())
  c:connect(host or "127.0.0.1", port, self:cb(function(err)
    assert(not err, err)
    on_connect(c)
  end))
  return c
end

-- A luvws server on loopback: on_stream(stream) after a successful accept
-- (or on_stream(stream, err) with opts.want_errors).
function T:ws_server(opts, on_stream)
  opts = opts or {}
  return self:listen(function(tcp)
    local s = ws.stream(tcp, opts.options)
    self.streams[#self.streams + 1] = s
    local function after(err)
      if err and not opts.want_errors then
        error("accept failed: " .. tostring(err))
      end
      on_stream(s, err)
    end
    if opts.decorator then
      s:accept_ex(opts.decorator, self:cb(after))
    else
      s:accept(self:cb(after))
    end
  end)
end

-- A luvws client connected and upgraded: on_open(stream, res) (or with
-- err as third value when opts.want_errors).
function T:ws_client(port, opts, on_open)
  opts = opts or {}
  self:connect(port, function(tcp)
    local s = ws.stream(tcp, opts.options)
    self.streams[#self.streams + 1] = s
    local res = {}
    s:handshake_ex(res, "127.0.0.1:" .. port, opts.target or "/", opts.decorator,
      self:cb(function(err)
        if err and not opts.want_errors then
          error("handshake failed: " .. tostring(err) .. " status " .. tostring(res.status))
        end
        on_open(s, res, err)
      end))
  end)
end

-- A connected pair: on_pair(client, server).
function T:pair(opts, on_pair)
  opts = opts or {}
  local server_stream, client_stream
  local function check()
    if server_stream and client_stream then
      on_pair(client_stream, server_stream)
    end
  end
  local _, port = self:ws_server({ options = opts.server }, function(s)
    server_stream = s
    check()
  end)
  self:ws_client(port, { options = opts.client }, function(c)
    client_stream = c
    check()
  end)
end

-- ------------------------------------------------------------------ frames

-- Builds a frame by hand. f = {fin=true, rsv=0, opcode=1, payload="",
-- mask="abcd" | nil, len=override}
function H.frame(f)
  local fin = f.fin == false and 0 or 0x80
  local b1 = fin | ((f.rsv or 0) << 4) | (f.opcode or 1)
  local payload = f.payload or ""
  local len = f.len or #payload
  local out = { string.char(b1) }
  local m = f.mask and 0x80 or 0
  if f.len16 or (len >= 126 and len < 65536 and not f.len64) then
    out[#out + 1] = string.char(m | 126) .. string.pack(">I2", len)
  elseif f.len64 or len >= 65536 then
    out[#out + 1] = string.char(m | 127) .. string.pack(">I8", len)
  else
    out[#out + 1] = string.char(m | len)
  end
  if f.mask then
    out[#out + 1] = f.mask
    local k = { f.mask:byte(1, 4) }
    local bytes = {}
    for i = 1, #payload do
      bytes[i] = string.char(payload:byte(i) ~ k[(i - 1) % 4 + 1])
    end
    out[#out + 1] = table.concat(bytes)
  else
    out[#out + 1] = payload
  end
  return table.concat(out)
end

-- Parses one unmasked frame at the start of buf: returns {fin, opcode,
-- payload, rsv}, rest; or nil if incomplete.
function H.parse_frame(buf)
  if #buf < 2 then return nil end
  local b1, b2 = buf:byte(1, 2)
  local len, pos = b2 & 0x7f, 3
  if len == 126 then
    if #buf < 4 then return nil end
    len, pos = string.unpack(">I2", buf, 3)
  elseif len == 127 then
    if #buf < 10 then return nil end
    len, pos = string.unpack(">I8", buf, 3)
  end
  local masked = (b2 & 0x80) ~= 0
  local key
  if masked then
    if #buf < pos + 3 then return nil end
    key = { buf:byte(pos, pos + 3) }
    pos = pos + 4
  end
  if #buf < pos + len - 1 then return nil end
  local payload = buf:sub(pos, pos + len - 1)
  if masked then
    local bytes = {}
    for i = 1, #payload do
      bytes[i] = string.char(payload:byte(i) ~ key[(i - 1) % 4 + 1])
    end
    payload = table.concat(bytes)
  end
  return {
    fin = (b1 & 0x80) ~= 0,
    rsv = (b1 >> 4) & 7,
    opcode = b1 & 0x0f,
    masked = masked,
    key = key and string.char(table.unpack(key)),
    payload = payload,
  }, buf:sub(pos + len)
end

-- The close code and reason in a close frame's payload.
function H.close_payload(p)
  if #p < 2 then return nil, "" end
  return (string.unpack(">I2", p)), p:sub(3)
end

-- A valid client upgrade request for a raw peer.
function H.upgrade_request(port, extra)
  return "GET / HTTP/1.1\r\nHost: 127.0.0.1:" .. port ..
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" ..
    (extra or "") .. "\r\n"
end

-- The 101 for that request's key.
H.upgrade_response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" ..
  "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"

-- A raw peer: collects everything it reads into r.data; r.eof when the
-- other side ends; r:write(bytes).
function T:raw(tcp)
  local r = { data = "", eof = false, tcp = tcp }
  tcp:read_start(self:cb(function(err, chunk)
    if chunk then
      r.data = r.data .. chunk
      if r.on_data then r.on_data(r) end
    else
      r.eof = err or true
      if r.on_eof then r.on_eof(r) end
    end
  end))
  function r.write(_, bytes)
    tcp:write(bytes)
  end
  -- Frames read so far (after the HTTP head, if skip_head).
  function r.frames(_, skip_head)
    local buf = r.data
    if skip_head then
      local e = buf:find("\r\n\r\n", 1, true)
      if not e then return {} end
      buf = buf:sub(e + 4)
    end
    local out = {}
    while true do
      local f, rest = H.parse_frame(buf)
      if not f then break end
      out[#out + 1] = f
      buf = rest
    end
    return out
  end
  return r
end

-- The Sec-WebSocket-Accept for key, computed with the openssl command
-- (SHA-1 and base64), independently of luvws.
function H.accept_of(key)
  local p = io.popen("printf '%s' '" .. key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11' | openssl sha1 -binary | openssl base64")
  local out = p:read("l")
  p:close()
  return out
end

-- A raw WebSocket server: completes the upgrade by hand (extra response
-- fields optional), then on_open(r) with r:frames() reading what follows.
function T:raw_server(on_open, extra)
  return self:listen(function(tcp)
    local r = self:raw(tcp)
    local prev = r.on_data
    r.on_data = function()
      if not r.answered and r.data:find("\r\n\r\n", 1, true) then
        r.answered = true
        r.request = r.data:sub(1, r.data:find("\r\n\r\n", 1, true) + 3)
        r.data = r.data:sub(#r.request + 1)
        local key = r.request:match("Sec%-WebSocket%-Key: ([^\r]+)")
        tcp:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
          "Sec-WebSocket-Accept: " .. H.accept_of(key) .. "\r\n" .. (extra or "") .. "\r\n")
        r.on_data = prev
        on_open(r)
      end
    end
  end)
end

-- Polls cond() every few ms until it is true (then calls fn) or the test
-- ends.
function T:when(cond, fn)
  local timer = self:track(uv.new_timer())
  timer:start(2, 2, self:cb(function()
    if cond() then
      timer:stop()
      timer:close()
      fn()
    end
  end))
end

-- Sets a timer: fn after ms.
function T:after(ms, fn)
  local timer = self:track(uv.new_timer())
  timer:start(ms, 0, self:cb(function()
    timer:close()
    fn()
  end))
end

-- Starts a process (stdout piped) that is killed when the test ends;
-- on_line(line) for each line it prints.
function T:spawn(cmd, args, on_line)
  local out = self:track(uv.new_pipe(false))
  local handle
  handle = uv.spawn(cmd, { args = args, stdio = { nil, out, 2 } }, function()
    if handle and not handle:is_closing() then handle:close() end
  end)
  assert(handle, "cannot start " .. cmd)
  self.procs = self.procs or {}
  self.procs[#self.procs + 1] = handle
  local buf = ""
  out:read_start(self:cb(function(err, chunk)
    if not chunk then return end
    buf = buf .. chunk
    while true do
      local line, rest = buf:match("^([^\n]*)\n(.*)$")
      if not line then break end
      buf = rest
      on_line(line)
    end
  end))
  return handle
end

-- Makes a fresh set of test certificates (csrc/test/gen-certs.sh) in a
-- temporary directory; returns the directory (with a trailing slash).
function H.make_certs()
  local dir = os.tmpname()
  os.remove(dir)
  local ok = os.execute("sh csrc/test/gen-certs.sh " .. dir .. " >/dev/null 2>&1")
  assert(ok, "gen-certs.sh failed")
  return dir .. "/"
end

function H.remove_dir(dir)
  if dir and dir:match("^/tmp/") then os.execute("rm -rf '" .. dir .. "'") end
end

-- Ends every process in procs ({pid = ..., exited = bool}, each the
-- leader of its own process group): SIGTERM to each group still running,
-- SIGKILL after grace seconds, and waits (at most grace + 2 s).
function H.reap(procs, grace)
  grace = grace or 2
  local deadline = uv.hrtime() + (grace + 2) * 1e9
  local function all_gone()
    for _, p in ipairs(procs) do
      if not p.exited then return false end
    end
    return true
  end
  for _, p in ipairs(procs) do
    if not p.exited then uv.kill(-p.pid, "sigterm") end
  end
  local killed = false
  local timer = uv.new_timer()
  timer:start(10, 10, function()
    if all_gone() or uv.hrtime() > deadline then
      timer:stop()
      uv.stop()
    elseif not killed and uv.hrtime() > deadline - 2e9 then
      killed = true
      for _, p in ipairs(procs) do
        if not p.exited then uv.kill(-p.pid, "sigkill") end
      end
    end
  end)
  uv.run()
  timer:close()
  uv.run("nowait")
end

-- Inside a coroutine: lets the loop run for ms milliseconds.
function H.sleep(ms)
  local co = coroutine.running()
  local timer = uv.new_timer()
  timer:start(ms, 0, function()
    timer:close()
    assert(coroutine.resume(co))
  end)
  coroutine.yield()
end

H.ws = ws
H.uv = uv
return H
