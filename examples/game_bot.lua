-- Bots for examples/game_server.lua: each one connects, presses random
-- buttons, and counts the snapshots it receives. Every second a line
-- reports the snapshot rate and the delivery delay; with SECONDS, the bots
-- stop after that long and a summary line ends the output.
--
--   lua5.4 examples/game_bot.lua URL [N [SECONDS]]
--   lua5.4 examples/game_bot.lua ws://127.0.0.1:8080/game 50 10
--
-- The delay is the bot's uv.hrtime() at arrival minus the sent_at that the
-- server put in the snapshot. uv.hrtime() reads CLOCK_MONOTONIC, which all
-- processes on one machine share, so this is meaningful only when the bots
-- and the server run on the same machine. (uv.now() would not do: it is the
-- loop's own clock, in milliseconds since that loop started.)
local uv = require "luv"
local ws = require "luvws"

local url = arg[1]
local N = tonumber(arg[2]) or 1
local SECONDS = tonumber(arg[3])
if not url or N < 1 then
  io.stderr:write("usage: game_bot.lua ws://HOST:PORT/game [N [SECONDS]]\n")
  os.exit(2)
end
io.stdout:setvbuf("line")

local MSG_WELCOME, MSG_STATE, MSG_INPUT = 0, 1, 1

-- Counters for the current report period, and for the whole run.
local period = { snapshots = 0, delays = {}, missed = 0 }
local total = { snapshots = 0, delay_sum = 0, delay_max = 0, missed = 0, errors = 0 }
local connected, bots = 0, {}

local function record(bot, tick, sent_at)
  local delay = (uv.hrtime() - sent_at) / 1e6 -- ms
  period.snapshots = period.snapshots + 1
  period.delays[#period.delays + 1] = delay
  total.snapshots = total.snapshots + 1
  total.delay_sum = total.delay_sum + delay
  total.delay_max = math.max(total.delay_max, delay)
  -- Ticks are numbered: a gap is a snapshot this bot never got.
  if bot.last_tick and tick > bot.last_tick + 1 then
    local missed = tick - bot.last_tick - 1
    period.missed = period.missed + missed
    total.missed = total.missed + missed
  end
  bot.last_tick = tick
end

-- One bot: connect, then react to what arrives (the callback style).
local function start_bot(n)
  local bot = { n = n }
  bots[n] = bot
  ws.connect(url, function(err, stream)
    if err then
      total.errors = total.errors + 1
      io.stderr:write(("bot %d: %s\n"):format(n, err))
      return
    end
    bot.stream = stream
    connected = connected + 1

    stream:on("message", function(data, is_text)
      if is_text or #data < 1 then return end
      local kind = data:byte(1)
      if kind == MSG_WELCOME then
        bot.id = string.unpack(">I2", data, 2)
      elseif kind == MSG_STATE then
        local tick, sent_at, count, pos = string.unpack(">I4I8I2", data, 2)
        record(bot, tick, sent_at)
        for _ = 1, count do
          local id, x, y
          id, x, y, pos = string.unpack(">I2I2I2", data, pos)
          if id == bot.id then bot.x, bot.y = x, y end
        end
      end
    end)

    stream:on("close", function(code, reason, cerr)
      connected = connected - 1
      bot.stream = nil
      if bot.input then
        bot.input:close()
        bot.input = nil
      end
      if not bot.stopping then
        total.errors = total.errors + 1
        io.stderr:write(("bot %d: closed: %s %s (%s)\n"):format(n, tostring(code), reason, tostring(cerr)))
      end
    end)

    -- A new random direction (or none) every 100-500 ms.
    bot.input = uv.new_timer()
    local function press()
      local buttons = ({ 0, 1, 2, 4, 8, 5, 6, 9, 10 })[math.random(9)]
      stream:write(string.pack(">BB", MSG_INPUT, buttons), "binary", function() end)
      bot.input:start(math.random(100, 500), 0, press)
    end
    press()
  end)
end

for i = 1, N do
  start_bot(i)
end

-- A report every second.
local started = uv.hrtime()
local reporter = uv.new_timer()
local last = uv.hrtime()
reporter:start(1000, 1000, function()
  local now = uv.hrtime()
  local secs = (now - last) / 1e9
  last = now
  local d = period.delays
  table.sort(d)
  local avg = 0
  for _, v in ipairs(d) do avg = avg + v end
  avg = #d > 0 and avg / #d or 0
  print(("%d/%d bots connected: %.1f snapshots/s per bot, delay avg %.2f ms p99 %.2f ms max %.2f ms, missed %d")
    :format(connected, N, period.snapshots / secs / math.max(connected, 1), avg,
      d[math.max(1, math.ceil(#d * 0.99))] or 0, d[#d] or 0, period.missed))
  period = { snapshots = 0, delays = {}, missed = 0 }
end)

-- With SECONDS: stop every bot (a clean close each), print the summary.
local ok = true
if SECONDS then
  local stop = uv.new_timer()
  stop:start(math.floor(SECONDS * 1000), 0, function()
    stop:close()
    reporter:close()
    local secs = (uv.hrtime() - started) / 1e9
    local with_snapshots = 0
    for _, bot in pairs(bots) do
      if bot.last_tick then with_snapshots = with_snapshots + 1 end
    end
    print(("summary: %d bots, %d received snapshots, %.1f snapshots/s per bot, delay avg %.2f ms max %.2f ms, missed %d, errors %d")
      :format(N, with_snapshots, total.snapshots / secs / N,
        total.snapshots > 0 and total.delay_sum / total.snapshots or 0, total.delay_max,
        total.missed, total.errors))
    ok = with_snapshots == N and total.errors == 0
    for _, bot in pairs(bots) do
      bot.stopping = true
      if bot.input then bot.input:stop() end
      if bot.stream then bot.stream:close(1000, "bye", function() end) end
    end
  end)
end

uv.run()
os.exit(ok and 0 or 1)
