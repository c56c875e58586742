-- luvws: WebSocket (RFC 6455, RFC 7692) for Lua 5.4 on luv.
--
-- The low-level API mirrors Boost.Beast's websocket::stream (ws.stream,
-- handshake, handshake_ex, accept, read, write, ping, close, ...); see
-- README.md and doc/reference.md.

local core = require "luvws.core"

local ws = {}
for k, v in pairs(core) do
  ws[k] = v
end

ws.headers = require "luvws.headers"

ws.timeout = {}

-- Beast's timeout::suggested(role), plus luvws's close timeout.
function ws.timeout.suggested(role)
  if role == "client" then
    return { handshake = 30, idle = false, keep_alive_pings = false, close = 5 }
  elseif role == "server" then
    return { handshake = 30, idle = 300, keep_alive_pings = true, close = 5 }
  end
  error("role must be \"client\" or \"server\"", 2)
end

return ws
