-- An echo server with the Beast-shaped API: every message comes back with
-- its type. Usage: lua5.4 examples/echo_server.lua [PORT] [HOST]
-- (PORT 0 picks a free port; the chosen one is printed.)
local uv = require "luv"
local ws = require "luvws"

local port = tonumber(arg[1]) or 8080
local host = arg[2] or "127.0.0.1"

local listener = uv.new_tcp()
assert(listener:bind(host, port))
assert(listener:listen(1024, function(err)
  if err then return end
  local tcp = uv.new_tcp()
  if not listener:accept(tcp) then return tcp:close() end
  tcp:nodelay(true)
  local stream = ws.stream(tcp, { timeout = ws.timeout.suggested("server") })
  stream:accept(function(err)
    if err then return end
    local function on_message(err, data, is_text)
      if err then return end -- "closed", "EOF", a protocol error...
      stream:write(data, is_text and "text" or "binary", function() end)
      stream:read(on_message)
    end
    stream:read(on_message)
  end)
end))

print(("echo server listening on ws://%s:%d/"):format(host, listener:getsockname().port))
io.stdout:flush()
uv.run()
