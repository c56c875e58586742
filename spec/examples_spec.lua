-- The examples run as users run them (subprocesses of lua5.4), and do
-- what they say: the game server and its bots (snapshots at 20 Hz), the
-- wss echo, the chat server with the scripted chat client, `make demo`'s
-- script. Plus a few hostile inputs: the servers must not trust clients.
--
-- Every process runs under `timeout` in its own process group, which is
-- killed at the end of each test, pass or fail.
local H = require "helper"
local ws, uv = H.ws, H.uv

local LUA = os.getenv("LUA") or "lua5.4"
local LIFETIME = 30 -- seconds: the longest any process here may live

-- ------------------------------------------------------------ processes

-- Starts args under `timeout`, in a process group of its own; collects
-- its stdout lines in p.out and its stderr in p.err; p.exited, p.code.
local function spawn(t, args, on_line)
  local out, err = t:track(uv.new_pipe(false)), t:track(uv.new_pipe(false))
  local p = { exited = false, out = {}, err = "" }
  local full = { "-k", "3", tostring(LIFETIME) }
  for _, a in ipairs(args) do full[#full + 1] = a end
  local handle, pid = uv.spawn("timeout", { args = full, stdio = { nil, out, err }, detached = true },
    function(code, signal)
      p.exited, p.code, p.signal = true, code, signal
      if not p.handle:is_closing() then p.handle:close() end
    end)
  assert(handle, "cannot start " .. args[1] .. ": " .. tostring(pid))
  p.handle, p.pid = handle, pid
  local buf = ""
  out:read_start(t:cb(function(_, chunk)
    if not chunk then return end
    buf = buf .. chunk
    for line in buf:gmatch("([^\n]*)\n") do
      p.out[#p.out + 1] = line
      if on_line then on_line(line) end
    end
    buf = buf:match("([^\n]*)$")
  end))
  err:read_start(function(_, chunk)
    if chunk then p.err = p.err .. chunk end
  end)
  return p
end

local function wait_for(what, secs, cond)
  local deadline = uv.hrtime() + secs * 1e9
  while true do
    local v = cond()
    if v then return v end
    if uv.hrtime() > deadline then
      error(("timed out after %gs waiting for %s"):format(secs, what), 0)
    end
    H.sleep(20)
  end
end

local function has(lines, pattern)
  for _, l in ipairs(lines) do
    if l:find(pattern) then return l end
  end
end

-- A test with processes: body(t, start) runs in a coroutine; start(args)
-- spawns one. Every process is gone when it returns, pass or fail.
local function with_processes(secs, body)
  local t = H.new()
  local procs = {}
  finally(function() H.reap(procs) end)
  t:co(function()
    body(t, function(args, on_line)
      local p = spawn(t, args, on_line)
      procs[#procs + 1] = p
      return p
    end)
    t:done()
  end)
  t:run(secs)
end

-- Starts a server example on a free port; returns the process and the
-- first URL matching `pattern` in its output.
local function start_server(t, start, script, pattern)
  local p = start({ LUA, script, "0" })
  local url = wait_for(script .. " to listen", 10, function()
    for _, line in ipairs(p.out) do
      local u = line:match(pattern)
      if u then return u end
    end
    if p.exited then error(script .. " exited: " .. p.err, 0) end
  end)
  return p, url
end

-- ------------------------------------------------------------ game

describe("examples/game_server.lua and game_bot.lua", function()
  it("three bots receive snapshots at about 20 Hz with a small delay", function()
    with_processes(20, function(t, start)
      local server, url = start_server(t, start, "examples/game_server.lua", "^game server: (ws://%S+)")
      local bots = start({ LUA, "examples/game_bot.lua", url, "3", "2.5" })
      wait_for("the bots to finish", 10, function() return bots.exited end)
      assert.equal(0, bots.code, table.concat(bots.out, "\n") .. bots.err)

      -- summary: 3 bots, 3 received snapshots, 19.7 snapshots/s per bot,
      -- delay avg 0.40 ms max 2.10 ms, missed 0, errors 0
      local summary = has(bots.out, "^summary: ")
      assert.truthy(summary, table.concat(bots.out, "\n"))
      local n, got, rate, avg, missed, errors = summary:match(
        "^summary: (%d+) bots, (%d+) received snapshots, ([%d.]+) snapshots/s per bot, " ..
        "delay avg ([%d.]+) ms max [%d.]+ ms, missed (%d+), errors (%d+)$")
      assert.truthy(n, summary)
      assert.equal("3", n)
      assert.equal("3", got)
      -- 2.5 s at 20 Hz, less the time to connect.
      assert.is_true(tonumber(rate) >= 15 and tonumber(rate) <= 21, summary)
      assert.is_true(tonumber(avg) < 25, summary)
      assert.is_true(tonumber(missed) <= 3, summary)
      assert.equal("0", errors)
      -- The per-second reports.
      assert.truthy(has(bots.out, "^3/3 bots connected: [%d.]+ snapshots/s per bot"), table.concat(bots.out, "\n"))

      -- The server's stats line (every 2 s) saw the three players.
      wait_for("the server's stats", 5, function()
        return has(server.out, "^tick %d+: 3 players, [%d.]+ ticks/s")
      end)
    end)
  end)

  it("closes a client that sends anything but an input (1008)", function()
    with_processes(15, function(t, start)
      local _, url = start_server(t, start, "examples/game_server.lua", "^game server: (ws://%S+)")
      local stream = assert(ws.connect(url))
      local welcome = assert(stream:read())
      local kind, id, w, h, hz = string.unpack(">BI2I2I2I2", welcome)
      assert.same({ 0, 1000, 1000, 20 }, { kind, w, h, hz })
      assert.is_true(id >= 1)
      assert(stream:write("hello", "text"))
      while stream:read() do end -- snapshots, until the close
      local code, reason = stream:reason()
      assert.equal(1008, code)
      assert.equal("bad input", reason)
    end)
  end)
end)

-- ------------------------------------------------------------ wss

describe("examples/wss_echo.lua", function()
  it("makes certificates, echoes over wss://localhost, removes them", function()
    with_processes(20, function(t, start)
      local p = start({ LUA, "examples/wss_echo.lua" })
      wait_for("wss_echo.lua to finish", 15, function() return p.exited end)
      local out = table.concat(p.out, "\n")
      assert.equal(0, p.code, out .. "\n" .. p.err)
      local dir = out:match("made in (%S+) %(removed%)")
      assert.truthy(dir, out)
      assert.is_nil(io.open(dir), dir .. " is still there")
      assert.truthy(has(p.out, "^server: listening on wss://127%.0%.0%.1:%d+/$"), out)
      assert.truthy(has(p.out, "^client: connected to wss://localhost:%d+/ %(TLSv1%.[23], "), out)
      assert.truthy(has(p.out, '^echo: text "hello over TLS"$'), out)
      assert.truthy(has(p.out, "^echo: binary 00010203ff$"), out)
      assert.truthy(has(p.out, "^echo: text, 100000 bytes$"), out)
      assert.truthy(has(p.out, "^client: closed cleanly$"), out)
      assert.truthy(has(p.out, "^server: closed$"), out)
    end)
  end)
end)

-- ------------------------------------------------------------ chat

local CONVERSATION = {
  "#lobby <alice> hi bob, welcome to the lobby",
  "#lobby <bob> hello alice! is this a WebSocket?",
  "#lobby <alice> it is: one topic per room, every message framed once for all of us",
  "#lobby <bob> nice. got to go, bye!",
}

local function escape(s)
  return (s:gsub("%p", "%%%0"))
end

describe("examples/chat_server.lua and chat_client.lua", function()
  it("the scripted conversation: both users see every line, the server logs it", function()
    with_processes(20, function(t, start)
      local server, url = start_server(t, start, "examples/chat_server.lua", "%(WebSocket (ws://%S+/chat)%)")
      local client = start({ LUA, "examples/chat_client.lua", url, "--demo" })
      wait_for("the conversation", 10, function() return client.exited end)
      local out = table.concat(client.out, "\n")
      assert.equal(0, client.code, out .. "\n" .. client.err)
      assert.equal("demo: conversation complete", client.out[#client.out])
      for _, line in ipairs(CONVERSATION) do
        assert.truthy(has(client.out, "^alice | " .. escape(line) .. "$"), out)
        assert.truthy(has(client.out, "^bob   | " .. escape(line) .. "$"), out)
        assert.truthy(wait_for("the server to log " .. line, 5, function()
          return has(server.out, "^%d%d:%d%d:%d%d " .. escape(line) .. "$")
        end))
      end
      assert.truthy(has(client.out, "^bob   | %* you joined #lobby %(here: alice bob%)$"), out)
      assert.truthy(has(client.out, "^alice | %* bob left #lobby$"), out)
      for _, line in ipairs({ "alice joined #lobby", "bob joined #lobby", "bob left #lobby",
                              "bob disconnected %(1000 bye%)", "alice disconnected %(1000 bye%)" }) do
        wait_for("the server to log " .. line, 5, function()
          return has(server.out, "^%d%d:%d%d:%d%d " .. line .. "$")
        end)
      end
    end)
  end)

  it("serves the page, and 404 / 405 for anything else", function()
    with_processes(15, function(t, start)
      local _, url = start_server(t, start, "examples/chat_server.lua", "%(WebSocket (ws://%S+/chat)%)")
      local port = tonumber(url:match(":(%d+)/"))
      local function request(head)
        local tcp = uv.new_tcp()
        local co = coroutine.running()
        local data = ""
        tcp:connect("127.0.0.1", port, function(err)
          assert(not err, err)
          tcp:write(head)
          tcp:read_start(function(_, chunk)
            if chunk then
              data = data .. chunk
            else
              tcp:close()
              assert(coroutine.resume(co))
            end
          end)
        end)
        coroutine.yield()
        return data
      end
      local page = request("GET /?auto=1 HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.truthy(page:find("^HTTP/1.1 200 "))
      assert.truthy(page:find("\r\nContent%-Type: text/html; charset=utf%-8\r\n"))
      assert.truthy(page:find("new WebSocket(", 1, true))
      assert.truthy(request("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"):find("^HTTP/1.1 404 "))
      assert.truthy(request("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"):find("^HTTP/1.1 405 "))
      -- A WebSocket upgrade anywhere but /chat is refused.
      local s, err, _, res = ws.connect((url:gsub("/chat$", "/other")))
      assert.is_nil(s)
      assert.truthy(err)
      assert.equal(404, res.status)
      -- So is one from another site's page (Origin), but not from our own.
      s, err, _, res = ws.connect(url, { origin = "http://evil.example" })
      assert.is_nil(s)
      assert.equal(403, res.status)
      s = assert(ws.connect(url, { origin = "http://127.0.0.1:" .. port }))
      assert(s:close())
    end)
  end)

  it("does not trust clients: names, sizes, rate, binary", function()
    with_processes(15, function(t, start)
      local _, url = start_server(t, start, "examples/chat_server.lua", "%(WebSocket (ws://%S+/chat)%)")
      local s = assert(ws.connect(url))
      assert.truthy(assert(s:read()):find("^hello guest%-%d+$"))
      local function ask(line)
        assert(s:write(line))
        return (assert(s:read()))
      end
      assert.truthy(ask("nick " .. ("x"):rep(25)):find("^error a nickname"))
      assert.truthy(ask("nick two words"):find("^error a nickname"))
      assert.truthy(ask("nick <b>"):find("^error a nickname"))
      assert.truthy(ask("join #room"):find("^error a room name"))
      assert.truthy(ask("say hi"):find("^error join a room first"))
      assert.truthy(ask("shout hi"):find("^error unknown command"))
      assert.equal("you mallory", ask("nick mallory"))
      assert.equal("joined r mallory", ask("join r"))
      -- Control characters are replaced; too long a message is refused.
      assert.equal("msg r mallory a b", ask("say a\27b"))
      assert.truthy(ask("say " .. ("é"):rep(300)):find("^error a message is at most 500 bytes"))
      -- A second user cannot take the nickname.
      local s2 = assert(ws.connect(url))
      s2:read()
      assert(s2:write("nick MALLORY"))
      assert.truthy(assert(s2:read()):find("^error the nickname MALLORY is taken"))
      -- A flood is answered with "slow down" (10 at once, 5 a second).
      for i = 1, 30 do s:write("say flood " .. i, function() end) end
      local slowed = 0
      for _ = 1, 30 do
        if assert(s:read()):find("^error slow down") then slowed = slowed + 1 end
      end
      assert.is_true(slowed >= 15, "slowed " .. slowed)
      -- A message over 4 KiB closes with 1009; a binary one with 1003.
      assert(s:write("say " .. ("x"):rep(5000)))
      while s:read() do end
      assert.equal(1009, (s:reason()))
      assert(s2:write("\1\2", "binary"))
      while s2:read() do end
      assert.same({ 1003, "text messages only" }, { s2:reason() })
    end)
  end)
end)

-- ------------------------------------------------------------ make demo

describe("tools/demo.sh (make demo)", function()
  it("runs the conversation, prints the browser hint, and stops by itself", function()
    with_processes(20, function(t, start)
      local started = uv.hrtime()
      local p = start({ "sh", "tools/demo.sh" })
      wait_for("the demo to finish", 15, function() return p.exited end)
      local out = table.concat(p.out, "\n")
      assert.equal(0, p.code, out .. "\n" .. p.err)
      assert.is_true((uv.hrtime() - started) / 1e9 < 10)
      assert.truthy(has(p.out, "^== chat server on http://127%.0%.0%.1:%d+/ "), out)
      assert.truthy(has(p.out, "^demo: conversation complete$"), out)
      assert.truthy(has(p.out, "^alice | " .. escape(CONVERSATION[4]) .. "$"), out)
      assert.truthy(has(p.out, "^  %d%d:%d%d:%d%d bob disconnected %(1000 bye%)$"), out)
      assert.truthy(has(p.out, "open http://127%.0%.0%.1:8080/"), out)
    end)
  end)
end)
