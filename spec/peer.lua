-- Real WebSocket peers (spec/peers/*: Python's websockets, Node's ws) as
-- subprocesses on the luv loop, for the interop specs.
--
--   local P = require "peer"
--   local srv = P.server("node", { "--subprotocols", "a,b" })  -- waits for `listening`
--   srv.port; srv.events; srv:find({ event = "message", length = 5 }, mark)
--   local cli = P.client("python", { "--url", url }, steps)    -- steps: the --script list
--   ... t:when(function() return cli.done end, ...)             -- exited and stdout drained
--   cli.code, cli.events, cli.stderr
--   srv:stop()     -- in lazy_teardown; P.stop_all(filter) in after_each (a test
--                  -- that fails still stops its peers: no process outlives it)
--
-- Every peer has a bounded --lifetime, so even a killed busted leaves nothing
-- behind for long. Callbacks here never raise (luv would end the process):
-- a line that is not JSON is kept in peer.bad_lines.
local uv = require "luv"
local json = require "dkjson" -- lua-dkjson: a dependency of Debian's lua-busted

local P = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
P.dir = here .. "/peers"
P.python = "/usr/bin/python3" -- Debian's, with python3-websockets (not the python3 on PATH)
P.node = "node"

local SCRIPTS = {
  python = { server = "py_server.py", client = "py_client.py" },
  node = { server = "node_server.js", client = "node_client.js" },
}

local live = {} -- peer -> true while its process may run
local started = {} -- every peer not yet stopped, in start order

local Peer = {}
Peer.__index = Peer

-- Runs the loop until cond() is true or secs pass; returns cond().
function P.run_until(cond, secs)
  if cond() then return true end
  local timer = uv.new_timer()
  local expired = false
  timer:start(math.floor(secs * 1000), 0, function()
    expired = true
  end)
  -- A short repeating wake-up so that cond is re-checked even when nothing
  -- the condition depends on produces a loop event.
  local tick = uv.new_timer()
  tick:start(5, 5, function() end)
  while not expired and not cond() do
    uv.run("once")
  end
  timer:close()
  tick:close()
  uv.run("nowait")
  return cond()
end

local function on_line(p, line)
  if line == "" then return end
  local ok, ev = pcall(json.decode, line)
  if ok and type(ev) == "table" and ev.event then
    p.events[#p.events + 1] = ev
    if ev.event == "listening" and not p.port then
      p.port = ev.port
    end
  else
    p.bad_lines[#p.bad_lines + 1] = line
  end
end

local function check_done(p)
  if p.exited and p.stdout_eof and not p.done then
    p.done = true
    live[p] = nil
  end
end

-- Spawns `cmd args...` with stdout (JSON lines) and stderr piped.
function P.spawn(cmd, args, name)
  local p = setmetatable({
    name = name or cmd,
    events = {},
    bad_lines = {},
    stderr = "",
    done = false,
    exited = false,
    stdout_eof = false,
  }, Peer)
  p.out = uv.new_pipe(false)
  p.err = uv.new_pipe(false)
  local buf = ""
  local handle, pid = uv.spawn(cmd, { args = args, stdio = { nil, p.out, p.err } },
    function(code, signal)
      p.exited, p.code, p.signal = true, code, signal
      if p.handle and not p.handle:is_closing() then p.handle:close() end
      check_done(p)
    end)
  if not handle then
    p.out:close()
    p.err:close()
    error(("cannot spawn %s: %s"):format(cmd, tostring(pid)), 2)
  end
  p.handle, p.pid = handle, pid
  live[p] = true
  started[#started + 1] = p
  p.out:read_start(function(err, chunk)
    if chunk then
      buf = buf .. chunk
      while true do
        local nl = buf:find("\n", 1, true)
        if not nl then break end
        local line = buf:sub(1, nl - 1)
        buf = buf:sub(nl + 1)
        pcall(on_line, p, line)
      end
    else
      if buf ~= "" then pcall(on_line, p, buf) end
      buf = ""
      p.stdout_eof = err or true
      if not p.out:is_closing() then p.out:close() end
      check_done(p)
    end
  end)
  p.err:read_start(function(_, chunk)
    if chunk then
      if #p.stderr < 65536 then p.stderr = p.stderr .. chunk end
    elseif not p.err:is_closing() then
      p.err:close()
    end
  end)
  return p
end

local function peer_cmd(kind, role, args)
  local s = assert(SCRIPTS[kind], "unknown peer kind " .. tostring(kind))[role]
  local path = P.dir .. "/" .. s
  local full = { path }
  for _, a in ipairs(args) do full[#full + 1] = a end
  if kind == "python" then
    return P.python, full
  end
  return P.node, full
end

-- A peer server (kind "python" or "node"); waits (up to 10 s) for its
-- `listening` line. args: extra options (--subprotocols, --decline, ...).
function P.server(kind, args, lifetime)
  local full = { "--port", "0", "--lifetime", tostring(lifetime or 120) }
  for _, a in ipairs(args or {}) do full[#full + 1] = a end
  local cmd, argv = peer_cmd(kind, "server", full)
  local p = P.spawn(cmd, argv, kind .. " server")
  p.role = "server"
  P.run_until(function() return p.port ~= nil or p.exited end, 10)
  if not p.port then
    p:stop()
    error(("%s did not start listening:\n%s"):format(p.name, p:dump()), 2)
  end
  return p
end

-- Writes steps (a list) to a temporary JSON file; returns its name.
local function script_file(steps)
  local name = os.tmpname()
  local f = assert(io.open(name, "wb"))
  f:write(json.encode(steps))
  f:close()
  return name
end

-- A peer client running steps (the --script list; see spec/peers/README.md).
-- args: --url and friends. Watch p.done (exited, output read), p.code.
function P.client(kind, args, steps, lifetime)
  local full = { "--lifetime", tostring(lifetime or 30) }
  for _, a in ipairs(args or {}) do full[#full + 1] = a end
  local script
  if steps then
    script = script_file(steps)
    full[#full + 1] = "--script"
    full[#full + 1] = script
  end
  local cmd, argv = peer_cmd(kind, "client", full)
  local p = P.spawn(cmd, argv, kind .. " client")
  p.role = "client"
  p.script = script
  return p
end

-- Events since index mark (exclusive; 0 = all) matching pattern: a table
-- of fields that must be equal, or a function(ev) -> bool.
function Peer:select(pattern, mark)
  local out = {}
  for i = (mark or 0) + 1, #self.events do
    local ev = self.events[i]
    local ok = true
    if type(pattern) == "function" then
      ok = pattern(ev)
    else
      for k, v in pairs(pattern) do
        if ev[k] ~= v then
          ok = false
          break
        end
      end
    end
    if ok then out[#out + 1] = ev end
  end
  return out
end

function Peer:find(pattern, mark)
  return self:select(pattern, mark)[1]
end

-- The number of events so far (a mark for select/find).
function Peer:mark()
  return #self.events
end

-- The log as text, for failure messages.
function Peer:dump(mark)
  local lines = { ("-- %s (pid %s) events%s:"):format(self.name, tostring(self.pid),
    mark and (" after " .. mark) or "") }
  for i = (mark or 0) + 1, #self.events do
    local ev = self.events[i]
    local copy = {}
    for k, v in pairs(ev) do copy[k] = v end
    if type(copy.text) == "string" and #copy.text > 80 then copy.text = copy.text:sub(1, 80) .. "..." end
    lines[#lines + 1] = "  " .. json.encode(copy)
  end
  for _, l in ipairs(self.bad_lines) do lines[#lines + 1] = "  (not JSON) " .. l end
  if self.exited then
    lines[#lines + 1] = ("-- exit code %s signal %s"):format(tostring(self.code), tostring(self.signal))
  end
  if self.stderr ~= "" then
    lines[#lines + 1] = "-- stderr:\n" .. self.stderr:sub(-2000)
  end
  return table.concat(lines, "\n")
end

-- Stops the process: SIGTERM, then SIGKILL after grace seconds; runs the
-- loop until it has exited and its pipes are closed. Safe to call twice.
function Peer:stop(grace)
  if not self.exited and self.handle and not self.handle:is_closing() then
    self.handle:kill("sigterm")
    if not P.run_until(function() return self.exited end, grace or 4) then
      self.handle:kill("sigkill")
      P.run_until(function() return self.exited end, 2)
    end
  end
  P.run_until(function() return self.done end, 1)
  for _, h in ipairs({ self.out, self.err, self.handle }) do
    if h and not h:is_closing() then h:close() end
  end
  uv.run("nowait")
  if self.script then
    os.remove(self.script)
    self.script = nil
  end
  live[self] = nil
end

-- Stops every peer started and not yet stopped (for after_each /
-- lazy_teardown), or those for which filter(peer) is true; removes their
-- script files.
function P.stop_all(filter)
  local keep, list = {}, {}
  for _, p in ipairs(started) do
    if not filter or filter(p) then list[#list + 1] = p else keep[#keep + 1] = p end
  end
  started = keep
  for _, p in ipairs(list) do p:stop() end
end

-- Peers whose process may still run (for checks).
function P.live()
  local list = {}
  for p in pairs(live) do list[#list + 1] = p end
  return list
end

-- sha256 hex of each string in list, computed with the openssl command
-- (Lua has none), one run for the whole list; results are cached.
local sha_cache = {}
function P.sha256_many(list)
  local names, todo = {}, {}
  for _, data in ipairs(list) do
    if not sha_cache[data] and not todo[data] then
      local name = os.tmpname()
      local f = assert(io.open(name, "wb"))
      f:write(data)
      f:close()
      names[#names + 1] = name
      todo[data] = name
    end
  end
  if #names > 0 then
    local pipe = io.popen("openssl dgst -sha256 -r " .. table.concat(names, " "))
    local out = pipe:read("a")
    pipe:close()
    local by_name = {}
    for hex, name in out:gmatch("(%x+) %*?(%S+)") do by_name[name] = hex end
    for data, name in pairs(todo) do
      sha_cache[data] = assert(by_name[name], "openssl dgst failed: " .. out)
      os.remove(name)
    end
  end
  local out = {}
  for i, data in ipairs(list) do out[i] = sha_cache[data] end
  return out
end

function P.sha256(data)
  return P.sha256_many({ data })[1]
end

-- n bytes, byte i = i % 251 (the peers' `big` / `size` pattern).
function P.pattern(n)
  local chunk = {}
  for i = 0, 250 do chunk[#chunk + 1] = string.char(i) end
  chunk = table.concat(chunk)
  return chunk:rep(n // #chunk + 1):sub(1, n)
end

P.json = json
return P
