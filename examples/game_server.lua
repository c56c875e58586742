-- A game server: clients send their inputs, the server moves every player
-- 20 times a second and publishes one binary snapshot of the whole world
-- to everyone (built once, framed once, queued to each client).
--
--   lua5.4 examples/game_server.lua [PORT [HOST]]   (PORT 0: a free port)
--
-- Try it with bots: lua5.4 examples/game_bot.lua ws://127.0.0.1:PORT/game 50
--
-- The protocol is binary, big-endian, packed with string.pack:
--
--   server -> client
--     welcome  ">B I2 I2 I2 I2"  0, your id, arena width, height, ticks/s
--     state    ">B I4 I8 I2"     1, tick, sent_at, n, then n times
--                ">I2 I2 I2"        id, x, y
--       sent_at is uv.hrtime() (nanoseconds, CLOCK_MONOTONIC) when the tick
--       was built: a client on the same machine can measure delivery delay.
--   client -> server
--     input    ">B B"            1, buttons (UP 1, DOWN 2, LEFT 4, RIGHT 8)
--
-- The server never trusts a client: a message that is not a 2-byte input
-- closes the connection (1008), and a client that stops reading is closed
-- once 64 KiB of snapshots wait for it (1008 "too slow", by publish).
local uv = require "luv"
local ws = require "luvws"

local port = tonumber(arg[1]) or 8080
local host = arg[2] or "127.0.0.1"

local HZ = 20                 -- ticks per second
local W, H = 1000, 1000       -- the arena
local SPEED = 10              -- units per tick
local STATS_EVERY = 2         -- seconds between stats lines

local UP, DOWN, LEFT, RIGHT = 1, 2, 4, 8
local MSG_WELCOME, MSG_STATE, MSG_INPUT = 0, 1, 1

io.stdout:setvbuf("line")

-- ------------------------------------------------------------ the world

local players = {}   -- id -> { id, x, y, buttons }
local count = 0
local last_id = 0

-- The next free id (1..65535; ids are reused once their player is gone).
local function new_id()
  for _ = 1, 65535 do
    last_id = last_id % 65535 + 1
    if not players[last_id] then
      return last_id
    end
  end
end

local function clamp(v, lo, hi)
  return v < lo and lo or (v > hi and hi or v)
end

local function move(p)
  local b = p.buttons
  local dx = ((b & RIGHT ~= 0) and 1 or 0) - ((b & LEFT ~= 0) and 1 or 0)
  local dy = ((b & DOWN ~= 0) and 1 or 0) - ((b & UP ~= 0) and 1 or 0)
  p.x = clamp(p.x + dx * SPEED, 0, W)
  p.y = clamp(p.y + dy * SPEED, 0, H)
end

-- ------------------------------------------------------------ clients

-- Runs in its own coroutine for each connection.
local function on_connection(stream)
  local id = new_id()
  if not id then
    stream:close(1013, "server full")
    return
  end
  local p = { id = id, x = math.random(0, W), y = math.random(0, H), buttons = 0 }
  players[id] = p
  count = count + 1

  -- The welcome goes first; then the snapshots (same stream, same order).
  stream:write(string.pack(">BI2I2I2I2", MSG_WELCOME, id, W, H, HZ), "binary")
  stream:subscribe("state")

  for data, is_text in stream:messages() do
    -- Only the latest buttons count: they are applied at the next tick.
    if is_text or #data ~= 2 or data:byte(1) ~= MSG_INPUT then
      stream:close(1008, "bad input")
      break
    end
    p.buttons = data:byte(2) & (UP | DOWN | LEFT | RIGHT)
  end

  players[id] = nil
  count = count - 1
end

local server, err = ws.server {
  host = host,
  port = port,
  path = "/game",
  max_connections = 5000,
  options = {
    read_message_max = 64,       -- inputs are 2 bytes
    max_queued_bytes = 64 * 1024, -- past this, publish closes the client
  },
  on_connection = on_connection,
  on_request = function(req, res)
    res.body = "luvws game server: connect a WebSocket to /game\n"
  end,
}
if not server then
  io.stderr:write("game server: cannot listen on ", host, ":", port, ": ", err, "\n")
  os.exit(1)
end
print("game server: " .. server.url .. " (" .. HZ .. " ticks/s)")

-- ------------------------------------------------------------ the tick

local tick = 0
local stats = { ticks = 0, sent = 0, bytes = 0, cost = 0, max_cost = 0 }

local function on_tick()
  local t0 = uv.hrtime()
  tick = tick + 1
  local parts = { string.pack(">BI4I8I2", MSG_STATE, tick, math.floor(t0), count) }
  for _, p in pairs(players) do
    move(p)
    parts[#parts + 1] = string.pack(">I2I2I2", p.id, p.x, p.y)
  end
  local snapshot = table.concat(parts)
  -- One frame for everyone subscribed to "state".
  local n = server:publish("state", snapshot, "binary")

  local cost = (uv.hrtime() - t0) / 1e6
  stats.ticks = stats.ticks + 1
  stats.sent = stats.sent + n
  stats.bytes = stats.bytes + n * #snapshot
  stats.cost = stats.cost + cost
  stats.max_cost = math.max(stats.max_cost, cost)
end

local ticker = uv.new_timer()
ticker:start(1000 // HZ, 1000 // HZ, on_tick)

local reporter = uv.new_timer()
local last = uv.hrtime()
reporter:start(STATS_EVERY * 1000, STATS_EVERY * 1000, function()
  local now = uv.hrtime()
  local secs = (now - last) / 1e9
  last = now
  print(("tick %d: %d players, %.1f ticks/s, %.0f snapshots/s, %.1f KiB/s out, tick cost avg %.3f ms max %.3f ms")
    :format(tick, count, stats.ticks / secs, stats.sent / secs, stats.bytes / secs / 1024,
      stats.ticks > 0 and stats.cost / stats.ticks or 0, stats.max_cost))
  stats = { ticks = 0, sent = 0, bytes = 0, cost = 0, max_cost = 0 }
end)

-- Ctrl-C or SIGTERM: stop ticking, close every client with 1001, exit.
local signals = {}
for _, name in ipairs({ "sigint", "sigterm" }) do
  local sig = uv.new_signal()
  sig:start(name, function()
    print("game server: shutting down")
    ticker:close()
    reporter:close()
    for _, s in ipairs(signals) do s:close() end
    server:close(2)
  end)
  signals[#signals + 1] = sig
end

uv.run()
