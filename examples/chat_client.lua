-- A client for examples/chat_server.lua, in the coroutine style.
--
--   lua5.4 examples/chat_client.lua URL NICK [ROOM]   chat from the terminal
--   lua5.4 examples/chat_client.lua URL --demo        a scripted conversation
--
-- URL is the server's WebSocket URL (ws://127.0.0.1:8080/chat). In the
-- terminal, a line is said to the room; /nick NAME, /join ROOM, /leave and
-- /quit are commands. --demo connects two users, alice and bob, has them
-- talk for a moment, prints what each one receives, and exits (status 0 if
-- the conversation went as expected).
local uv = require "luv"
local ws = require "luvws"

local url, nick, room = arg[1], arg[2], arg[3] or "lobby"
if not url or not nick then
  io.stderr:write("usage: chat_client.lua ws://HOST:PORT/chat (NICK [ROOM] | --demo)\n")
  os.exit(2)
end
io.stdout:setvbuf("line")

-- How a line from the server reads to a human.
local function pretty(line)
  local kind, rest = line:match("^(%S+) ?(.*)$")
  if kind == "msg" then
    local r, who, text = rest:match("^(%S+) (%S+) (.*)$")
    return ("#%s <%s> %s"):format(r, who, text)
  elseif kind == "join" or kind == "leave" then
    local r, who = rest:match("^(%S+) (%S+)$")
    return ("* %s %s #%s"):format(who, kind == "join" and "joined" or "left", r)
  elseif kind == "joined" then
    local r, members = rest:match("^(%S+) ?(.*)$")
    return ("* you joined #%s (here: %s)"):format(r, members)
  elseif kind == "nick" then
    local _, old, new = rest:match("^(%S+) (%S+) (%S+)$")
    return ("* %s is now %s"):format(old, new)
  elseif kind == "hello" or kind == "you" then
    return "* you are " .. rest
  elseif kind == "left" then
    return "* you left #" .. rest
  end
  return "! " .. rest -- "error ..." (or something this client does not know)
end

-- ------------------------------------------------------------ a user

-- connect(name): a connected user (call inside a coroutine). user:send(line)
-- sends a command; user:expect(pattern) waits for a line from the server
-- that matches (each line received is printed, prefixed with `label`).
local User = {}
User.__index = User

local function connect(label)
  local stream, err = ws.connect(url, { headers = { ["User-Agent"] = "luvws-chat-client" } })
  if not stream then
    error(("%s: cannot connect to %s: %s"):format(label, url, err), 0)
  end
  local user = setmetatable({ stream = stream, label = label, inbox = {} }, User)
  stream:on("message", function(line)
    print(("%-6s| %s"):format(label, pretty(line)))
    user.inbox[#user.inbox + 1] = line
    if user.waiting then
      local co = user.waiting
      user.waiting = nil
      assert(coroutine.resume(co))
    end
  end)
  stream:on("close", function(code, reason)
    user.closed = ("%s %s"):format(tostring(code), reason or "")
    if user.on_close then user.on_close() end
    if user.waiting then
      local co = user.waiting
      user.waiting = nil
      assert(coroutine.resume(co))
    end
  end)
  return user
end

function User:send(line)
  assert(self.stream:write(line))
end

function User:expect(pattern)
  while true do
    while #self.inbox > 0 do
      local line = table.remove(self.inbox, 1)
      if line:find(pattern) then
        return line
      end
    end
    if self.closed then
      error(("%s: the server closed the connection (%s) before %q"):format(self.label, self.closed, pattern), 0)
    end
    self.waiting = coroutine.running()
    coroutine.yield()
  end
end

-- ------------------------------------------------------------ --demo

local function demo()
  local alice, bob = connect("alice"), connect("bob")
  alice:expect("^hello ")
  bob:expect("^hello ")
  alice:send("nick alice"); alice:expect("^you alice$")
  bob:send("nick bob"); bob:expect("^you bob$")

  alice:send("join lobby"); alice:expect("^joined lobby alice$")
  bob:send("join lobby"); bob:expect("^joined lobby alice bob$")
  alice:expect("^join lobby bob$")

  local lines = {
    { alice, "hi bob, welcome to the lobby" },
    { bob, "hello alice! is this a WebSocket?" },
    { alice, "it is: one topic per room, every message framed once for all of us" },
    { bob, "nice. got to go, bye!" },
  }
  for _, l in ipairs(lines) do
    local who, text = l[1], l[2]
    who:send("say " .. text)
    local echo = ("^msg lobby %s "):format(who.label)
    alice:expect(echo)
    bob:expect(echo)
  end

  bob:send("leave"); bob:expect("^left lobby$")
  alice:expect("^leave lobby bob$")
  assert(bob.stream:close(1000, "bye"))
  assert(alice.stream:close(1000, "bye"))
  print("demo: conversation complete")
end

-- ------------------------------------------------------------ terminal

local function interactive()
  local me = connect(nick)
  me:expect("^hello ")
  me:send("nick " .. nick)
  me:send("join " .. room)
  -- stdin, a line at a time (a tty or a pipe).
  local input = uv.guess_handle(0) == "tty" and uv.new_tty(0, true) or uv.new_pipe(false)
  if uv.guess_handle(0) ~= "tty" then input:open(0) end
  me.on_close = function()
    print("* disconnected (" .. me.closed .. ")")
    if not input:is_closing() then input:close() end
  end
  local buf = ""
  input:read_start(function(err, chunk)
    if err or not chunk then -- end of input: leave
      input:close()
      me.stream:close(1000, "bye", function() end)
      return
    end
    buf = buf .. chunk
    for line in buf:gmatch("([^\n]*)\n") do
      line = line:gsub("\r$", "")
      local cmd, argument = line:match("^/(%a+)%s*(.*)$")
      if cmd == "quit" then
        input:close()
        me.stream:close(1000, "bye", function() end)
        return
      elseif cmd == "nick" or cmd == "join" or cmd == "leave" then
        me.stream:write(cmd .. " " .. argument, function() end)
      elseif line ~= "" then
        me.stream:write("say " .. line, function() end)
      end
    end
    buf = buf:match("([^\n]*)$")
  end)
end

-- Everything runs in a coroutine (ws.connect and write then wait without
-- callbacks); an error ends the program with a message.
local ok_exit = true
local co = coroutine.create(function()
  local ok, err = xpcall(nick == "--demo" and demo or interactive, debug.traceback)
  if not ok then
    io.stderr:write("chat_client: ", tostring(err), "\n")
    ok_exit = false
    uv.stop()
  end
end)
assert(coroutine.resume(co))

-- The demo finishes within seconds; do not let it hang.
if nick == "--demo" then
  local t = uv.new_timer()
  t:start(10000, 0, function()
    io.stderr:write("chat_client: the demo did not finish in 10 s\n")
    ok_exit = false
    uv.stop()
  end)
  t:unref()
end

uv.run()
os.exit(ok_exit and 0 or 1)
