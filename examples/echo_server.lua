-- An echo server with the Beast-shaped API: every message comes back with
-- its type. Usage: lua5.4 examples/echo_server.lua [PORT] [HOST] [--tls CERT KEY]
-- (PORT 0 picks a free port; the chosen one is printed.) With --tls it
-- speaks wss:// with the certificate and key given (PEM files).
local uv = require "luv"
local ws = require "luvws"

-- A write's completion: nothing to do for an echo (a failure also ends
-- the read loop). One function for every write, not a closure each time.
local function ignore() end

local args, cert, key = {}, nil, nil
local i = 1
while arg[i] do
  if arg[i] == "--tls" then
    cert, key = arg[i + 1], arg[i + 2]
    assert(cert and key, "usage: echo_server.lua [PORT] [HOST] [--tls CERT KEY]")
    i = i + 3
  else
    args[#args + 1] = arg[i]
    i = i + 1
  end
end
local port = tonumber(args[1]) or 8080
local host = args[2] or "127.0.0.1"

-- One TLS context for every connection (certificate and key loaded once).
local ctx = cert and assert(ws.tls.context { role = "server", cert = cert, key = key })

local listener = uv.new_tcp()
assert(listener:bind(host, port))
assert(listener:listen(1024, function(err)
  if err then return end
  local tcp = uv.new_tcp()
  if not listener:accept(tcp) then return tcp:close() end
  tcp:nodelay(true)
  -- With TLS, the stream runs over the TLS layer instead of the TCP handle.
  local stream = ws.stream(ctx and ws.tls.wrap(tcp, ctx) or tcp, { timeout = ws.timeout.suggested("server") })
  stream:accept(function(err)
    if err then return end
    local function on_message(err, data, is_text)
      if err then return end -- "closed", "EOF", a protocol error...
      stream:write(data, is_text and "text" or "binary", ignore)
      stream:read(on_message)
    end
    stream:read(on_message)
  end)
end))

print(("echo server listening on %s://%s:%d/"):format(ctx and "wss" or "ws", host, listener:getsockname().port))
io.stdout:flush()
uv.run()
