-- A real browser against a luvws server: headless Chromium loads the page
-- of examples/chat_server.lua (started as a subprocess), the page's script
-- connects to ws://<host>/chat, joins a room and says hello; a luvws client
-- in the same room answers. The spec reads what the page shows through the
-- DOM, and what the server saw through its log on stdout.
--
-- Chromium is driven over the DevTools protocol, with luvws as the
-- DevTools WebSocket client (so this is also luvws against Chromium's own
-- WebSocket server). Polling the DOM in real time is what makes this
-- reliable: `--dump-dom --virtual-time-budget` runs the page on virtual
-- time, which races ahead of the network and misses late messages.
--
-- Every process runs under `timeout` in its own process group (killed as
-- a group at the end, pass or fail), so nothing outlives the spec.
local H = require "helper"
local ws, uv = H.ws, H.uv

local CHROMIUM = "/usr/bin/chromium"
local LUA = os.getenv("LUA") or "lua5.4"
local LIFETIME = 60 -- seconds: the longest any process here may live

-- ------------------------------------------------------------ JSON (CDP)

local json = {}

function json.encode(v)
  local ty = type(v)
  if ty == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return ({ ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" })[c]
        or ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif ty == "number" or ty == "boolean" then
    return tostring(v)
  elseif ty == "table" then
    local parts = {}
    for k, x in pairs(v) do
      parts[#parts + 1] = json.encode(tostring(k)) .. ":" .. json.encode(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("json.encode: cannot encode a " .. ty)
end

-- Decodes a JSON text (null becomes nil).
function json.decode(s)
  local pos = 1
  local function skip()
    pos = s:find("[^ \t\r\n]", pos) or #s + 1
  end
  local function expect(c)
    skip()
    if s:sub(pos, pos) ~= c then
      error(("json.decode: '%s' expected at %d in %s"):format(c, pos, s:sub(1, 200)))
    end
    pos = pos + 1
  end
  local esc = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
  local function str()
    expect('"')
    local out = {}
    while true do
      local a = assert(s:find('["\\]', pos), "json.decode: unterminated string")
      out[#out + 1] = s:sub(pos, a - 1)
      if s:sub(a, a) == '"' then
        pos = a + 1
        return table.concat(out)
      end
      local c = s:sub(a + 1, a + 1)
      if c == "u" then
        local cp = tonumber(s:sub(a + 2, a + 5), 16)
        pos = a + 6
        if cp >= 0xD800 and cp <= 0xDBFF and s:sub(pos, pos + 1) == "\\u" then
          cp = 0x10000 + ((cp - 0xD800) << 10) + (tonumber(s:sub(pos + 2, pos + 5), 16) - 0xDC00)
          pos = pos + 6
        end
        out[#out + 1] = utf8.char(cp)
      else
        out[#out + 1] = assert(esc[c], "json.decode: bad escape")
        pos = a + 2
      end
    end
  end
  local value
  local function list(close, item)
    pos = pos + 1
    skip()
    if s:sub(pos, pos) == close then
      pos = pos + 1
      return
    end
    repeat
      item()
      skip()
      local c = s:sub(pos, pos)
      pos = pos + 1
    until c ~= ","
    assert(s:sub(pos - 1, pos - 1) == close, "json.decode: '" .. close .. "' expected")
  end
  function value()
    skip()
    local c = s:sub(pos, pos)
    if c == "{" then
      local obj = {}
      list("}", function()
        local k = str()
        expect(":")
        obj[k] = value()
      end)
      return obj
    elseif c == "[" then
      local arr, n = {}, 0
      list("]", function()
        n = n + 1
        arr[n] = value()
      end)
      return arr
    elseif c == '"' then
      return str()
    end
    for word, v in pairs({ ["true"] = true, ["false"] = false, null = json }) do
      if s:sub(pos, pos + #word - 1) == word then
        pos = pos + #word
        if v == json then return nil end
        return v
      end
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    assert(num and #num > 0, "json.decode: unexpected character at " .. pos)
    pos = pos + #num
    return tonumber(num)
  end
  return value()
end

-- ------------------------------------------------------------ processes

-- Starts args (a command and its arguments) under `timeout`, in a process
-- group of its own. on_out(line) / on_err(line) for each line printed.
local function spawn(t, args, on_out, on_err)
  local out, err = t:track(uv.new_pipe(false)), t:track(uv.new_pipe(false))
  local p = { exited = false }
  local full = { "-k", "3", tostring(LIFETIME) }
  for _, a in ipairs(args) do full[#full + 1] = a end
  local handle, pid = uv.spawn("timeout", { args = full, stdio = { nil, out, err }, detached = true },
    function(code, signal)
      p.exited, p.code, p.signal = true, code, signal
      if not p.handle:is_closing() then p.handle:close() end
    end)
  assert(handle, "cannot start " .. args[1] .. ": " .. tostring(pid))
  p.handle, p.pid = handle, pid
  for pipe, fn in pairs({ [out] = on_out or function() end, [err] = on_err or function() end }) do
    local buf = ""
    pipe:read_start(t:cb(function(_, chunk)
      if not chunk then return end
      buf = buf .. chunk
      for line in buf:gmatch("([^\n]*)\n") do fn(line) end
      buf = buf:match("([^\n]*)$")
    end))
  end
  return p
end


-- ------------------------------------------------------------ coroutines

-- Waits until cond() returns a true value (checked every 50 ms), at most
-- secs seconds; returns that value, or fails with `what` (and what
-- detail(), if given, returns).
local function wait_for(what, secs, cond, detail)
  local deadline = uv.hrtime() + secs * 1e9
  while true do
    local v = cond()
    if v then return v end
    if uv.hrtime() > deadline then
      error(("timed out after %gs waiting for %s%s"):format(secs, what, detail and "\n" .. detail() or ""), 0)
    end
    H.sleep(50)
  end
end

local function has(lines, pattern)
  for _, l in ipairs(lines) do
    if l:find(pattern) then return l end
  end
end

-- ------------------------------------------------------------ DevTools

-- A DevTools connection: cdp:call(method, params) -> result (or error).
local function devtools(url)
  local stream = assert(ws.connect(url))
  local cdp, id = { stream = stream }, 0
  function cdp.call(_, method, params)
    id = id + 1
    local msg = { id = id, method = method }
    if params then msg.params = params end
    assert(stream:write(json.encode(msg)))
    while true do
      local data = assert(stream:read())
      local reply = json.decode(data)
      if reply.id == id then
        if reply.error then
          error(("%s: %s"):format(method, reply.error.message), 0)
        end
        return reply.result
      end -- else an event: not asked for, ignored
    end
  end
  return cdp
end

-- ------------------------------------------------------------ the spec

local chromium_present = io.open(CHROMIUM) ~= nil
local profiles = {} -- the user-data-dirs used here

describe("browser (headless Chromium)", function()
  local it_ = chromium_present and it or pending

  it_("loads the chat page, joins a room, says hello and sees the reply", function()
    local t = H.new()
    local procs = {}
    local profile = os.tmpname()
    os.remove(profile)
    assert(os.execute("mkdir -m 700 " .. profile))
    profiles[#profiles + 1] = profile
    finally(function()
      H.reap(procs)
      H.remove_dir(profile)
    end)

    local server_log, page_http, chat_url = {}, nil, nil
    procs[#procs + 1] = spawn(t, { LUA, "examples/chat_server.lua", "0" }, function(line)
      server_log[#server_log + 1] = line
      if not page_http then
        page_http, chat_url = line:match("^chat server: open (http://%S+) .*%(WebSocket (ws://%S+)%)")
      end
    end)

    local devtools_url
    local dom -- the last state read from the page
    local bot_saw = {}

    t:co(function()
      wait_for("the chat server", 10, function() return chat_url end)

      -- A luvws user in room "test": answers the browser's hello.
      local bot = assert(ws.connect(chat_url))
      assert(bot:read():find("^hello "))
      assert(bot:write("nick luabot"))
      assert.equal("you luabot", bot:read())
      assert(bot:write("join test"))
      assert.equal("joined test luabot", bot:read())
      bot:on("message", function(line)
        bot_saw[#bot_saw + 1] = line
        if line == "msg test browser hello" then
          bot:write("say hi browser", function() end)
        end
      end)

      -- The browser, told by the query to run the exchange by itself.
      local page = page_http .. "?auto=1&nick=browser&room=test&say=hello"
      procs[#procs + 1] = spawn(t, { CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
        "--user-data-dir=" .. profile, "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0", page }, nil, function(line)
        devtools_url = devtools_url or line:match("DevTools listening on (ws://%S+)")
      end)
      wait_for("Chromium's DevTools endpoint", 20, function() return devtools_url end)

      -- The page's target, then a DevTools connection to the page itself.
      local browser = devtools(devtools_url)
      local target = wait_for("the page target", 10, function()
        for _, info in ipairs(browser:call("Target.getTargets").targetInfos) do
          if info.type == "page" and info.url:find(page_http, 1, true) == 1 then
            return info.targetId
          end
        end
      end)
      local devtools_port = devtools_url:match("^ws://[^/]+:(%d+)/")
      local tab = devtools(("ws://127.0.0.1:%s/devtools/page/%s"):format(devtools_port, target))

      -- Reads the page: its status, the lines of #log, data-done.
      local expression = [[JSON.stringify({
        status: (document.getElementById("status") || {}).textContent || "",
        extensions: ((document.getElementById("status") || {}).dataset || {}).extensions || "",
        done: (document.body && document.body.dataset.done) || "",
        log: Array.from(document.querySelectorAll("#log div"), (d) => d.textContent)})]]
      local function read_page()
        local r = tab:call("Runtime.evaluate", { expression = expression, returnByValue = true })
        dom = json.decode(r.result.value)
        return dom
      end
      wait_for("the reply on the page", 15, function()
        local d = read_page()
        return d.done == "1" and has(d.log, "^#test <luabot> hi browser$")
      end, function()
        return "the page shows:\n  " .. table.concat(dom and dom.log or {}, "\n  ") ..
          "\nthe server logged:\n  " .. table.concat(server_log, "\n  ")
      end)

      -- Close the browser (the page's socket goes away with it).
      pcall(browser.call, browser, "Browser.close")
      wait_for("the server to see the browser leave", 10, function()
        return has(server_log, "browser disconnected")
      end)
      bot:close(1000, "done")
      t:done()
    end)
    t:run(45)

    -- What the page shows, read from its DOM.
    assert.equal("1", dom.done)
    assert.equal("connected", dom.status)
    -- Chromium offered permessage-deflate, our server accepted it, and the
    -- messages above went through compressed both ways.
    assert.truthy(dom.extensions:find("permessage-deflate", 1, true), "page: " .. tostring(dom.extensions))
    assert.truthy(has(dom.log, "^%* you are guest%-%d+$"))
    assert.truthy(has(dom.log, "^%* you are browser$"))
    assert.truthy(has(dom.log, "^%* you joined #test %(here: browser luabot%)$"))
    assert.truthy(has(dom.log, "^#test <browser> hello$"))
    assert.truthy(has(dom.log, "^#test <luabot> hi browser$"))

    -- What the luvws user in the room received.
    assert.truthy(has(bot_saw, "^join test browser$"))
    assert.truthy(has(bot_saw, "^msg test browser hello$"))
    assert.truthy(has(bot_saw, "^msg test luabot hi browser$"))
    assert.truthy(has(bot_saw, "^leave test browser$"))

    -- What the server saw: a browser (its User-Agent), and the exchange.
    assert.truthy(has(server_log, "connected from 127%.0%.0%.1 %(Mozilla/5%.0.* with permessage%-deflate$"))
    assert.truthy(has(server_log, "is now browser$"))
    assert.truthy(has(server_log, " browser joined #test$"))
    assert.truthy(has(server_log, " #test <browser> hello$"))
    assert.truthy(has(server_log, " #test <luabot> hi browser$"))
    assert.truthy(has(server_log, " browser left #test$"))
    assert.truthy(has(server_log, " browser disconnected %(1001"))
  end)

  it_("leaves no Chromium behind", function()
    -- Every process that used one of this file's profiles is gone, and so
    -- are the profiles.
    assert.is_true(#profiles > 0)
    for _, profile in ipairs(profiles) do
      local p = io.popen("pgrep -f -- '[-]-user-data-dir=" .. profile .. "' || true")
      local left = p:read("a")
      p:close()
      assert.equal("", left)
      assert.is_nil(io.open(profile))
    end
  end)
end)
