-- Runs N connect / handshake / echo / close cycles between a luvws client
-- and a luvws server in this process, `parallel` at a time, and prints
-- Lua memory (KiB) and RSS (KiB) at checkpoints as "mark N lua rss".
-- Usage: lua5.4 spec/scripts/cycles.lua N [parallel]
local uv = require "luv"
local ws = require "luvws"

local total = tonumber(arg[1]) or 1000
local parallel = tonumber(arg[2]) or 16

local function rss()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local listener = uv.new_tcp()
assert(listener:bind("127.0.0.1", 0))
local port = listener:getsockname().port
listener:listen(256, function(err)
  assert(not err, err)
  local tcp = uv.new_tcp()
  listener:accept(tcp)
  local s = ws.stream(tcp)
  s:accept(function(e)
    if e then return end
    local function loop()
      s:read(function(e2, data, is_text)
        if e2 then return end
        s:write(data, is_text and "text" or "binary", function() end)
        loop()
      end)
    end
    loop()
  end)
end)

local started, finished, failures = 0, 0, 0
local marks = { [total // 10] = true, [total] = true }
for i = 1, 9 do marks[total * i // 10] = true end

local payload = ("m"):rep(300)
local function one()
  if started >= total then return end
  started = started + 1
  local tcp = uv.new_tcp()
  tcp:connect("127.0.0.1", port, function(err)
    if err then failures = failures + 1; tcp:close(); finished = finished + 1; return one() end
    local s = ws.stream(tcp)
    s:handshake("127.0.0.1", "/", function(e)
      if e then failures = failures + 1 end
      s:write(payload, function() end)
      s:read(function(e2, data)
        if e2 or data ~= payload then failures = failures + 1 end
        s:close(1000, "bye", function(e3)
          if e3 then failures = failures + 1 end
          finished = finished + 1
          if marks[finished] then
            collectgarbage()
            collectgarbage()
            print(("mark %d %d %d"):format(finished, math.floor(collectgarbage("count")), rss()))
            io.stdout:flush()
          end
          if finished == total then
            listener:close()
          else
            one()
          end
        end)
      end)
    end)
  end)
end
for _ = 1, parallel do one() end
uv.run()
print(("failures %d"):format(failures))
