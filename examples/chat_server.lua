-- A chat server: nicknames, rooms, join and leave, and a browser page
-- served from the same port.
--
--   lua5.4 examples/chat_server.lua [PORT [HOST]]   (PORT 0: a free port)
--
-- then open the printed http:// URL in a browser. The page connects to
-- ws://<same host>/chat. Each room is a topic ("room:NAME"): a message is
-- framed once by server:publish and queued to every member.
--
-- The protocol is one text message per command, a word and its argument:
--
--   client -> server              server -> client
--   nick NAME                     hello NICK             (on connect: your nick)
--   join ROOM                     you NICK               (your nick changed)
--   leave                         joined ROOM NICK...    (you joined; members)
--   say TEXT                      join ROOM NICK         (someone joined)
--                                 leave ROOM NICK        (someone left)
--                                 nick ROOM OLD NEW      (someone renamed)
--                                 msg ROOM NICK TEXT     (a message, yours too)
--                                 left ROOM              (you left)
--                                 error TEXT
--
-- Names (nicknames, rooms) are 1-24 ASCII letters, digits, '_' or '-', so
-- they never contain a space: only the last field (TEXT) does. Nothing the
-- client sends is trusted: sizes are bounded, names are checked, control
-- characters are replaced, and each connection is rate limited.
--
-- Everything that happens is logged on stdout, one line per event:
--   12:00:00 alice joined #lobby
--   12:00:01 #lobby <alice> hello
local uv = require "luv"
local ws = require "luvws"

local port = tonumber(arg[1]) or 8080
local host = arg[2] or "127.0.0.1"

local MAX_NAME = 24         -- nickname and room name length
local MAX_TEXT = 500        -- bytes per chat message
local RATE, BURST = 5, 10   -- messages per second, and the burst allowed

io.stdout:setvbuf("line") -- log lines go out as they happen (also to a pipe)

local function log(fmt, ...)
  print(os.date("%H:%M:%S ") .. fmt:format(...))
end

-- The browser page (below) is sent for GET /.
local PAGE

-- ------------------------------------------------------------ state

local nicks = {}   -- lower-case nickname -> stream (nicknames are unique)
local rooms = {}   -- room -> { [nick] = true } (who is in it)
local guests = 0

local function valid_name(s)
  return type(s) == "string" and #s >= 1 and #s <= MAX_NAME and s:match("^[%w_%-]+$") ~= nil
end

local function members_of(room)
  local list = {}
  for nick in pairs(rooms[room] or {}) do
    list[#list + 1] = nick
  end
  table.sort(list)
  return list
end

local server -- set below; the handlers use it to publish

-- Takes `stream` out of its room (if any) and tells the others.
local function leave_room(stream)
  local room = stream.room
  if not room then return end
  stream:unsubscribe("room:" .. room)
  stream.room = nil
  rooms[room][stream.nick] = nil
  if next(rooms[room]) == nil then rooms[room] = nil end
  server:publish("room:" .. room, ("leave %s %s"):format(room, stream.nick))
  log("%s left #%s", stream.nick, room)
end

-- A token bucket: true if this connection may send one more message now.
local function allowed(stream)
  local now = uv.now() / 1000
  local tokens = math.min(BURST, stream.tokens + (now - stream.refilled) * RATE)
  stream.refilled = now
  if tokens < 1 then
    stream.tokens = tokens
    return false
  end
  stream.tokens = tokens - 1
  return true
end

-- ------------------------------------------------------------ commands

local commands = {}

function commands.nick(stream, name)
  if not valid_name(name) then
    return "error a nickname is 1-" .. MAX_NAME .. " letters, digits, _ or -"
  end
  local key = name:lower()
  if nicks[key] and nicks[key] ~= stream then
    return "error the nickname " .. name .. " is taken"
  end
  local old = stream.nick
  if name == old then
    return "you " .. name
  end
  nicks[old:lower()] = nil
  nicks[key] = stream
  stream.nick = name
  log("%s is now %s", old, name)
  if stream.room then
    local members = rooms[stream.room]
    members[old], members[name] = nil, true
    server:publish("room:" .. stream.room, ("nick %s %s %s"):format(stream.room, old, name), stream)
  end
  return "you " .. name
end

function commands.join(stream, room)
  if not valid_name(room) then
    return "error a room name is 1-" .. MAX_NAME .. " letters, digits, _ or -"
  end
  if stream.room == room then
    return "error you are already in #" .. room
  end
  leave_room(stream)
  rooms[room] = rooms[room] or {}
  rooms[room][stream.nick] = true
  stream.room = room
  server:publish("room:" .. room, ("join %s %s"):format(room, stream.nick))
  stream:subscribe("room:" .. room) -- after the publish: no "join" to ourselves
  log("%s joined #%s", stream.nick, room)
  return ("joined %s %s"):format(room, table.concat(members_of(room), " "))
end

function commands.leave(stream)
  if not stream.room then
    return "error you are not in a room"
  end
  local room = stream.room
  leave_room(stream)
  return "left " .. room
end

function commands.say(stream, text)
  if not stream.room then
    return "error join a room first"
  end
  -- The WebSocket layer already checked that a text message is UTF-8.
  text = text:gsub("%c", " "):match("^%s*(.-)%s*$")
  if text == "" then
    return "error say what?"
  end
  if #text > MAX_TEXT then
    return "error a message is at most " .. MAX_TEXT .. " bytes"
  end
  log("#%s <%s> %s", stream.room, stream.nick, text)
  -- To everyone in the room, the sender included (that is its echo).
  server:publish("room:" .. stream.room, ("msg %s %s %s"):format(stream.room, stream.nick, text))
end

-- ------------------------------------------------------------ one client

-- Runs in its own coroutine for each connection (ws.server does that):
-- an error here is logged and closes only this connection.
local function on_connection(stream, req)
  repeat
    guests = guests + 1
  until not nicks["guest-" .. guests]
  stream.nick = "guest-" .. guests
  stream.tokens, stream.refilled = BURST, uv.now() / 1000
  nicks[stream.nick] = stream
  local peer = stream:peername() or {}
  local agent = req.headers["user-agent"]
  local deflate = stream:get_status().permessage_deflate
  log("%s connected from %s%s%s", stream.nick, tostring(peer.ip),
    agent and " (" .. agent:sub(1, 60) .. ")" or "", deflate and " with permessage-deflate" or "")

  stream:write("hello " .. stream.nick)
  for data, is_text in stream:messages() do
    if not is_text then
      stream:close(1003, "text messages only")
      break
    end
    local reply
    if not allowed(stream) then
      reply = "error slow down"
    else
      local cmd, rest = data:match("^(%a+)%s?(.*)$")
      local handler = cmd and commands[cmd]
      if handler then
        reply = handler(stream, rest)
      else
        reply = "error unknown command (nick NAME, join ROOM, leave, say TEXT)"
      end
    end
    if reply then
      stream:write(reply) -- in a coroutine: waits until it is sent
    end
  end

  -- The connection is over (closed by either side, or failed).
  leave_room(stream)
  nicks[stream.nick:lower()] = nil
  -- reason(): the close code the client sent (0 if it sent none, e.g.
  -- when the connection failed or was dropped).
  local code, reason = stream:reason()
  log("%s disconnected (%s)", stream.nick, code ~= 0 and (code .. " " .. reason) or "no close frame")
end

-- ------------------------------------------------------------ the server

local err
server, err = ws.server {
  host = host,
  port = port,
  path = "/chat",              -- WebSocket upgrades elsewhere get a 404
  compression = true,          -- permessage-deflate when the client offers it
  options = {
    read_message_max = 4096,   -- a bigger message closes with 1009
    max_queued_bytes = 1 << 20, -- a reader this far behind is dropped
  },
  -- A browser names the page that opens a WebSocket in Origin: accept
  -- only our own page, so another site cannot use its visitors' browsers
  -- to chat here. (Clients that are not browsers send no Origin.)
  on_upgrade = function(req)
    local origin, host_header = req.headers["origin"], req.headers["host"]
    if origin == nil or (host_header and origin:lower():match("^https?://(.*)$") == host_header:lower()) then
      return true
    end
    return 403, "cross-origin WebSocket refused"
  end,
  on_connection = on_connection,
  -- Plain HTTP on the same port: the page.
  on_request = function(req, res)
    local path = req.target:match("^[^?]*")
    if req.method ~= "GET" then
      res.status, res.body = 405, "method not allowed"
    elseif path == "/" then
      res.headers = { ["Content-Type"] = "text/html; charset=utf-8", ["Cache-Control"] = "no-store" }
      res.body = PAGE
    else
      res.status, res.body = 404, "not found"
    end
  end,
}
if not server then
  io.stderr:write("chat server: cannot listen on ", host, ":", port, ": ", err, "\n")
  os.exit(1)
end

print(("chat server: open http://%s:%d/ in a browser (WebSocket %s)"):format(
  host:find(":", 1, true) and "[" .. host .. "]" or host, server.port, server.url))

-- Ctrl-C or SIGTERM: a graceful shutdown (1001 to every client).
local signals = {}
for _, name in ipairs({ "sigint", "sigterm" }) do
  local sig = uv.new_signal()
  sig:start(name, function()
    log("shutting down")
    for _, s in ipairs(signals) do s:close() end
    server:close(2, function() log("bye") end)
  end)
  signals[#signals + 1] = sig
end

PAGE = [==[<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>luvws chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 46em; margin: 1em auto; padding: 0 1em; }
  #log { border: 1px solid #ccc; height: 24em; overflow-y: auto; padding: .5em; white-space: pre-wrap; }
  #log .sys { color: #777; } #log .err { color: #b00; }
  form { display: flex; gap: .5em; margin: .5em 0; } #text { flex: 1; }
</style>
</head>
<body>
<h1>luvws chat</h1>
<form id="setup">
  <label>nick <input id="nick" maxlength="24" size="12"></label>
  <label>room <input id="room" maxlength="24" size="12" value="lobby"></label>
  <button>join</button>
  <span id="status">connecting</span>
</form>
<div id="log"></div>
<form id="say"><input id="text" maxlength="500" autocomplete="off"><button>send</button></form>
<script>
"use strict";
// ?auto=1&nick=NAME&room=ROOM&say=TEXT: set the nick, join the room, say
// TEXT once joined (for scripted tests), then mark <body data-done="1">.
const q = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const log = $("log");
let me = "", room = "";

function show(text, cls) {
  const line = document.createElement("div");
  line.textContent = text;              // text, never HTML
  if (cls) line.className = cls;
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
}

// Splits "a b c rest of line" into n fields, the last one taking the rest.
function fields(line, n) {
  const out = [];
  for (let i = 1; i < n; i++) {
    const sp = line.indexOf(" ");
    if (sp < 0) break;
    out.push(line.slice(0, sp));
    line = line.slice(sp + 1);
  }
  out.push(line);
  return out;
}

const sock = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/chat");
const send = (line) => { if (sock.readyState === WebSocket.OPEN) sock.send(line); };

sock.onopen = () => {
  $("status").textContent = "connected";
  $("status").dataset.extensions = sock.extensions;
  if (q.get("auto")) {
    if (q.get("nick")) send("nick " + q.get("nick"));
    send("join " + (q.get("room") || "lobby"));
  }
};
sock.onclose = (ev) => {
  $("status").textContent = "disconnected";
  show("* disconnected (" + ev.code + (ev.reason ? " " + ev.reason : "") + ")", "sys");
};
sock.onmessage = (ev) => {
  const [kind] = fields(ev.data, 2);
  if (kind === "hello" || kind === "you") {
    me = fields(ev.data, 2)[1];
    $("nick").value = me;
    show("* you are " + me, "sys");
  } else if (kind === "joined") {
    const [, r, members] = fields(ev.data, 3);
    room = r;
    show("* you joined #" + r + " (here: " + members + ")", "sys");
    if (q.get("auto") && q.get("say")) send("say " + q.get("say"));
  } else if (kind === "join" || kind === "leave") {
    const [, r, nick] = fields(ev.data, 3);
    show("* " + nick + (kind === "join" ? " joined #" : " left #") + r, "sys");
  } else if (kind === "nick") {
    const [, r, old, nick] = fields(ev.data, 4);
    show("* " + old + " is now " + nick, "sys");
  } else if (kind === "msg") {
    const [, r, nick, text] = fields(ev.data, 4);
    show("#" + r + " <" + nick + "> " + text);
    if (q.get("auto") && nick === me && text === q.get("say")) document.body.dataset.done = "1";
  } else if (kind === "error") {
    show("! " + fields(ev.data, 2)[1], "err");
  }
};

$("setup").onsubmit = (ev) => {
  ev.preventDefault();
  const nick = $("nick").value.trim(), r = $("room").value.trim();
  if (nick && nick !== me) send("nick " + nick);
  if (r && r !== room) send("join " + r);
};
$("say").onsubmit = (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (text) send("say " + text);
  $("text").value = "";
};
</script>
</body>
</html>
]==]

uv.run()
