-- A client with the Beast-shaped API: handshake_ex with a decorator, then
-- a text and a binary message, then a close with a code and a reason.
-- Usage: lua5.4 examples/client.lua [ws://host:port/path]
local uv = require "luv"
local ws = require "luvws"

local url = arg[1] or "ws://127.0.0.1:8080/"
local host, port, target = url:match("^ws://([^:/]+):?(%d*)(/?.*)$")
assert(host, "usage: client.lua ws://host:port/path")
port = tonumber(port) or 80
if target == "" then target = "/" end

local tcp = uv.new_tcp()
tcp:connect(host, port, function(err)
  assert(not err, err)
  tcp:nodelay(true)
  local stream = ws.stream(tcp)
  local res = {}
  ws.handshake_ex(stream, res, host .. ":" .. port, target,
    function(req)
      req.headers["User-Agent"] = "luvws-example/1.0"
      req.headers["Authorization"] = "Bearer example-token"
    end,
    function(err)
      print("handshake:", err or "ok", res.status, res.reason)
      for name, value in pairs(res.headers or {}) do
        print("  " .. name .. ": " .. value)
      end
      if err then return end
      stream:write("hello, luvws", "text", function(err) assert(not err, err) end)
      stream:write("\0\1\2\3binary", "binary", function(err) assert(not err, err) end)
      stream:read(function(err, data, is_text)
        print(("read: %s %q"):format(is_text and "text" or "binary", data))
        stream:read(function(err, data, is_text)
          print(("read: %s %q"):format(is_text and "text" or "binary", data))
          stream:close(1000, "done", function(err)
            local code, reason = stream:reason()
            print("closed:", err or "ok", "peer sent", code, reason)
          end)
        end)
      end)
    end)
end)
uv.run()
