-- WebSocket URLs (RFC 6455 3): ws://host[:port]/path?query and wss://...
--
--   url.parse("wss://[::1]:8443/chat?room=1")
--   --> {scheme = "wss", secure = true, host = "::1", port = 8443,
--        target = "/chat?room=1", host_header = "[::1]:8443"}
--
-- Returns nil and a message for a string that is not a WebSocket URL
-- (another scheme, no host, a bad port, a fragment, spaces).
local M = {}

local default_port = { ws = 80, wss = 443 }

function M.parse(s)
  if type(s) ~= "string" then
    return nil, "a URL string expected"
  end
  local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    return nil, "not a URL (expected ws://host/path or wss://host/path)"
  end
  scheme = scheme:lower()
  if not default_port[scheme] then
    return nil, ("unsupported scheme '%s' (ws or wss)"):format(scheme)
  end
  if rest:find("#", 1, true) then
    return nil, "a WebSocket URL cannot have a fragment (#)"
  end
  if rest:find("[%s%c]") then
    return nil, "spaces and control characters are not allowed in a URL"
  end
  local authority, target = rest:match("^([^/?]*)(.*)$")
  if target == "" then
    target = "/"
  elseif target:sub(1, 1) == "?" then
    target = "/" .. target
  end
  if authority:find("@", 1, true) then
    return nil, "user information in a WebSocket URL is not supported"
  end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([%x:.%%%a]+)%](.*)$")
    if not host then
      return nil, "bad IPv6 literal in URL"
    end
  else
    host, port = authority:match("^([^:]*)(.*)$")
  end
  if host == "" then
    return nil, "a URL needs a host"
  end
  if port ~= "" then
    local digits = port:match("^:(%d+)$")
    if not digits or tonumber(digits) < 1 or tonumber(digits) > 65535 then
      return nil, "bad port in URL"
    end
    port = tonumber(digits)
  else
    port = default_port[scheme]
  end
  local bracketed = host:find(":", 1, true) and ("[" .. host .. "]") or host
  local host_header = bracketed
  if port ~= default_port[scheme] then
    host_header = bracketed .. ":" .. port
  end
  return {
    scheme = scheme,
    secure = scheme == "wss",
    host = host,
    port = port,
    target = target,
    host_header = host_header,
  }
end

return M
