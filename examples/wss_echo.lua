-- wss:// end to end: makes a throw-away CA and a certificate for
-- localhost with the openssl command, starts a TLS echo server, connects a
-- client that trusts only that CA, exchanges a few messages, and exits.
--
--   lua5.4 examples/wss_echo.lua
--
-- The keys live in a temporary directory only until the TLS contexts have
-- loaded them; the directory is removed right after (and on failure).
local uv = require "luv"
local ws = require "luvws"

io.stdout:setvbuf("line")

local function sh(cmd)
  local ok = os.execute(cmd)
  if not ok then error("command failed: " .. cmd, 0) end
end

-- A CA, and a localhost certificate signed by it (EC P-256: quick to make).
local function make_certs(dir)
  local q = "'" .. dir .. "'/"
  local key = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "
  sh(key .. q .. "ca.key 2>/dev/null")
  sh("openssl req -x509 -new -key " .. q .. "ca.key -sha256 -days 1 -subj '/CN=wss_echo example CA'" ..
    " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign" ..
    " -out " .. q .. "ca.pem")
  sh(key .. q .. "server.key 2>/dev/null")
  sh("openssl req -new -key " .. q .. "server.key -subj /CN=localhost -out " .. q .. "server.csr")
  local ext = assert(io.open(dir .. "/server.ext", "w"))
  ext:write("basicConstraints=CA:FALSE\n",
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    "extendedKeyUsage=serverAuth\n")
  ext:close()
  sh("openssl x509 -req -in " .. q .. "server.csr -CA " .. q .. "ca.pem -CAkey " .. q .. "ca.key" ..
    " -CAcreateserial -sha256 -days 1 -extfile " .. q .. "server.ext -out " .. q .. "server.pem 2>/dev/null")
end

-- The TLS contexts: the server's certificate and key; a client that
-- trusts our CA only (verification and the host-name check stay on).
local function contexts()
  local p = assert(io.popen("mktemp -d"))
  local dir = p:read("l")
  p:close()
  assert(dir and dir:match("^/"), "mktemp -d failed")
  local ok, server_ctx, client_ctx = pcall(function()
    make_certs(dir)
    local s = assert(ws.tls.context({ role = "server", cert = dir .. "/server.pem", key = dir .. "/server.key" }))
    local c = assert(ws.tls.context({ ca = dir .. "/ca.pem" }))
    return s, c
  end)
  os.execute("rm -rf '" .. dir .. "'")
  if not ok then error(server_ctx, 0) end
  print("certificates: a CA and a localhost certificate, made in " .. dir .. " (removed)")
  return server_ctx, client_ctx
end

local function main()
  local server_ctx, client_ctx = contexts()

  -- The server: echoes every message back, with its type.
  local server = assert(ws.server {
    host = "127.0.0.1",
    port = 0,
    tls = server_ctx,
    on_connection = function(stream)
      for data, is_text in stream:messages() do
        stream:write(data, is_text and "text" or "binary")
      end
    end,
  })
  print("server: listening on " .. server.url)

  -- The client, by name: the certificate is for localhost.
  local url = ("wss://localhost:%d/"):format(server.port)
  local stream = assert(ws.connect(url, { tls = client_ctx }))
  local tls = stream:get_status().tls
  print(("client: connected to %s (%s, %s)"):format(url, tls.version, tls.cipher or "?"))

  for _, msg in ipairs({ { "hello over TLS", "text" }, { "\0\1\2\3\255", "binary" },
                         { ("x"):rep(100000), "text" } }) do
    assert(stream:write(msg[1], msg[2]))
    local data, is_text = assert(stream:read())
    assert(data == msg[1] and is_text == (msg[2] == "text"), "the echo differs")
    if #data > 40 then
      print(("echo: %s, %d bytes"):format(msg[2], #data))
    elseif is_text then
      print(("echo: %s %q"):format(msg[2], data))
    else
      print(("echo: %s %s"):format(msg[2], data:gsub(".", function(c) return ("%02x"):format(c:byte()) end)))
    end
  end

  assert(stream:close(1000, "bye"))
  print("client: closed cleanly")
  server:close(1) -- waits (in a coroutine) until every connection is gone
  print("server: closed")
end

local ok = false
coroutine.wrap(function()
  local success, err = xpcall(main, debug.traceback)
  if success then
    ok = true
  else
    io.stderr:write("wss_echo: ", tostring(err), "\n")
    uv.stop()
  end
end)()

-- Never hang: give up after 10 s.
local guard = uv.new_timer()
guard:start(10000, 0, function()
  io.stderr:write("wss_echo: timed out\n")
  uv.stop()
end)
guard:unref()

uv.run()
os.exit(ok and 0 or 1)
