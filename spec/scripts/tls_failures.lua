-- N failed TLS handshakes (the client does not trust the server's CA),
-- two at a time; prints "mark N lua_kib rss_kib" ten times and
-- "failures N" at the end. Usage: tls_failures.lua CERTDIR N
local uv = require "luv"
local ws = require "luvws"
local D, total = arg[1], tonumber(arg[2]) or 1000

local function rss()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local sctx = assert(ws.tls.context({ role = "server", cert = D .. "server.pem", key = D .. "server.key" }))
local cctx = assert(ws.tls.context({ ca = D .. "ca2.pem" }))
local listener = uv.new_tcp()
assert(listener:bind("127.0.0.1", 0))
local port = listener:getsockname().port
listener:listen(64, function()
  local tcp = uv.new_tcp()
  listener:accept(tcp)
  ws.stream(ws.tls.wrap(tcp, sctx)):accept(function() end)
end)

local started, done, failures = 0, 0, 0
local function one()
  if started >= total then return end
  started = started + 1
  local tcp = uv.new_tcp()
  tcp:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    local s = ws.stream(ws.tls.wrap(tcp, cctx, { servername = "localhost" }))
    s:handshake("localhost", "/", function(e)
      if e == "tls_unknown_ca" then failures = failures + 1 end
      done = done + 1
      if done % (total // 10) == 0 then
        collectgarbage()
        collectgarbage()
        print(("mark %d %d %d"):format(done, math.floor(collectgarbage("count")), rss()))
      end
      if done == total then listener:close() else one() end
    end)
  end)
end
one()
one()
uv.run()
print("failures " .. failures)
