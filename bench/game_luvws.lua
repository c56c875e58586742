-- bench/game_luvws.lua: the game-server scenario of `make bench` for luvws.
--   lua5.4 bench/game_luvws.lua PORT
-- Every connection subscribes to the topic "state"; 20 times a second a luv
-- timer publishes one 64-byte binary message to all of them with
-- server:publish (the frame is built once). The first 8 bytes are the send
-- time, uv.hrtime() (CLOCK_MONOTONIC, ns) big-endian, so a client on the
-- same machine can measure the delivery latency.
local uv = require "luv"
local ws = require "luvws"

local port = assert(tonumber(arg[1]), "usage: game_luvws.lua PORT")
local HZ, SIZE = 20, 64

local server = assert(ws.server {
  host = "127.0.0.1",
  port = port,
  backlog = 1024,
  max_connections = 100000,
  on_connection = function(stream)
    stream:subscribe("state")
    for _ in stream:messages() do end -- clients send nothing; wait for the end
  end,
})

-- Ticks on a fixed schedule (tick k at start + k / HZ), as a game server's
-- fixed time step does (a repeating timer would drift by its wake-up
-- delay). A server that falls behind sends the next tick 5 ms after the
-- last one ends (time for its loop to accept and read: without it Node's ws
-- stops accepting new connections once saturated) and does not make up the
-- ones it missed: the load generator reports the ticks per second reached.
local pad = ("\0"):rep(SIZE - 8)
local period = 1e9 / HZ
local due = uv.hrtime() + period
local timer = uv.new_timer()
local function tick()
  server:publish("state", string.pack(">I8", math.floor(uv.hrtime())) .. pad, "binary")
  uv.update_time() -- the timer below counts from now, not from this loop turn's start
  local now = uv.hrtime()
  due = due + period
  if due < now + 5e6 then due = now + 5e6 end -- behind
  timer:start(math.floor((due - now) / 1e6 + 0.5), 0, tick)
end
timer:start(1000 // HZ, 0, tick)

io.stdout:setvbuf("line")
print(("game luvws: %s, %d Hz, %d-byte publishes"):format(server.url, HZ, SIZE))

local sig = uv.new_signal()
sig:start("sigterm", function() os.exit(0) end)
uv.run()
