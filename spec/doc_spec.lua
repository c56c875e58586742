-- doc/reference.md documents every public name: this spec enumerates the
-- module, the stream and server methods, the options and the error names
-- at run time (and from the sources where Lua cannot see them), and fails
-- for any name the reference does not document in its section, or for a
-- heading there that names something that no longer exists.
local H = require "helper"
local ws, uv = H.ws, H.uv

local DOC = "doc/reference.md"

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local function escape(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- The reference split into its "## " sections; each has its text, the names
-- in backticks of its "### " headings, and its "### " subsections.
local function parse_doc(text)
  local sections, order, cur, sub = {}, {}, nil, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local h2 = line:match("^## (.*)$")
    local h3 = line:match("^### (.*)$")
    if h2 then
      cur = { title = h2, text = "", headings = {}, subs = {} }
      sections[#sections + 1] = cur
      order[#order + 1] = h2
      sub = nil
    elseif cur then
      if h3 then
        sub = { title = h3, text = "" }
        cur.subs[#cur.subs + 1] = sub
        for name in h3:gmatch("`([^`]+)`") do
          cur.headings[name] = sub
        end
      end
      cur.text = cur.text .. line .. "\n"
      if sub then
        sub.text = sub.text .. line .. "\n"
      end
    end
  end
  return sections
end

local doc = read_file(DOC)
local sections = parse_doc(doc)

local function section(prefix)
  for _, s in ipairs(sections) do
    if s.title:sub(1, #prefix) == prefix then
      return s
    end
  end
  error(("%s has no section starting with '## %s'"):format(DOC, prefix))
end

-- `name` in backticks (alone, or followed by a call, a field, a space...).
local function mentions(text, name)
  return text:find("`" .. escape(name) .. "[^%w_]") ~= nil
end

-- Collects failures so one run lists every undocumented name.
local function checker()
  local missing = {}
  local c = {}
  function c.need(ok, what)
    if not ok then
      missing[#missing + 1] = what
    end
  end
  function c.done()
    assert(#missing == 0, ("%s: %d undocumented or stale name(s):\n  %s"):format(
      DOC, #missing, table.concat(missing, "\n  ")))
  end
  return c
end

local function sorted_keys(t, keep)
  local out = {}
  for k, v in pairs(t) do
    if type(k) == "string" and (not keep or keep(k, v)) then
      out[#out + 1] = k
    end
  end
  table.sort(out)
  return out
end

local function public(k)
  return k:sub(1, 1) ~= "_"
end

-- The names a Lua table constructor `local <var> = { a = true, ... }` in a
-- source file lists.
local function lua_table_names(path, var)
  local src = read_file(path)
  local body = src:match("local " .. var .. " = (%b{})")
  assert(body, ("%s: no table '%s' (update spec/doc_spec.lua)"):format(path, var))
  local names = {}
  for name in body:gmatch("([%a_][%w_]*)%s*=") do
    names[#names + 1] = name
  end
  assert(#names > 0, path .. ": table " .. var .. " is empty")
  table.sort(names)
  return names
end

-- The body of a C function, from its definition to the next one.
local function c_function(path, signature)
  local src = read_file(path)
  local start = src:find(signature, 1, true)
  assert(start, ("%s: no '%s' (update spec/doc_spec.lua)"):format(path, signature))
  local stop = src:find("\n}\n", start, true)
  return src:sub(start, stop)
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do
    s[v] = true
  end
  return s
end

-- A stream on a connected loopback socket, for the option checks.
local function with_stream(fn)
  local t = H.new()
  local _, port = t:listen(function() end)
  t:connect(port, function(tcp)
    fn(ws.stream(tcp))
    t:done()
  end)
  t:run()
end

-- Every option name set_option accepts. The list is here so the spec says
-- what it expects; the checks below make sure it is neither short of the
-- implementation nor longer than it.
local OPTIONS = {
  "read_message_max", "write_buffer_bytes", "auto_fragment", "binary", "compress",
  "secure_prng", "max_header_bytes", "max_queued_bytes", "max_unread_bytes", "timeout",
  "decorator", "subprotocols", "permessage_deflate",
}

-- Fields of the server object that are public (the rest are internal).
local SERVER_FIELDS = { "url", "port", "host" }

-- libuv names the reference tells users about.
local UV_NAMES = { "EOF", "ECONNRESET", "ECONNREFUSED", "EAI_NONAME", "ETIMEDOUT", "EPIPE" }

local stream_methods = debug.getregistry()["luvws.stream"].methods

describe("doc/reference.md", function()
  it("has its sections", function()
    for _, prefix in ipairs({ "Conventions", "Module", "Stream", "Options", "ws.connect",
      "ws.server", "TLS", "Errors", "Close codes", "Limits" }) do
      section(prefix)
    end
  end)

  it("documents every ws.* function and field in its section", function()
    local c = checker()
    local home = { stream = "Stream", connect = "ws.connect", server = "ws.server", tls = "TLS" }
    for _, k in ipairs(sorted_keys(ws)) do
      local v = ws[k]
      if stream_methods[k] then
        -- Documented with the stream: a heading and the method form.
        local s = section("Stream")
        c.need(s.headings["ws." .. k] or s.headings["stream:" .. k],
          ("Stream: a heading ### `ws.%s` (or `stream:%s`)"):format(k, k))
        c.need(mentions(s.text, "ws." .. k) and mentions(s.text, "stream:" .. k),
          ("Stream: both `ws.%s` and the method form `stream:%s(...)`"):format(k, k))
      elseif type(v) == "function" then
        local s = section(home[k] or "Module")
        c.need(s.headings["ws." .. k], ("%s: a heading ### `ws.%s`"):format(s.title, k))
      elseif type(v) == "table" and k ~= "errors" then
        -- A sub-module: each function a heading, each other field named.
        local s = section(home[k] or "Module")
        c.need(mentions(doc, "ws." .. k), "`ws." .. k .. "`")
        for _, sub in ipairs(sorted_keys(v)) do
          local name = "ws." .. k .. "." .. sub
          if type(v[sub]) == "function" then
            c.need(s.headings[name], ("%s: a heading ### `%s`"):format(s.title, name))
          else
            c.need(mentions(s.text, name), ("%s: `%s`"):format(s.title, name))
          end
        end
      else
        local s = section("Module")
        c.need(s.headings["ws." .. k], ("Module: a heading ### `ws.%s`"):format(k))
      end
    end
    c.done()
  end)

  it("documents every method of a header table", function()
    local c = checker()
    local s = section("Module")
    for _, k in ipairs(sorted_keys(ws.headers.methods)) do
      c.need(mentions(s.text, "h:" .. k), "Module: `h:" .. k .. "(...)`")
    end
    c.done()
  end)

  it("documents every method and public field of a ws.server", function()
    local server = assert(ws.server({ port = 0 }))
    local methods = sorted_keys(getmetatable(server).__index, public)
    local present = {}
    for _, f in ipairs(SERVER_FIELDS) do
      present[f] = server[f] ~= nil
    end
    server:close(0, function() end)
    uv.run("nowait")
    uv.run("nowait")
    local c = checker()
    local s = section("ws.server")
    for _, k in ipairs(methods) do
      c.need(s.headings["server:" .. k], "ws.server: a heading ### `server:" .. k .. "`")
    end
    for _, f in ipairs(SERVER_FIELDS) do
      c.need(present[f], "the server has no field '" .. f .. "' (update SERVER_FIELDS)")
      c.need(mentions(s.text, "server." .. f), "ws.server: `server." .. f .. "`")
    end
    c.done()
  end)

  it("documents every option of set_option, with its fields, and the list here is complete", function()
    -- The list is exactly what set_option and get_option take...
    with_stream(function(s)
      for _, name in ipairs(OPTIONS) do
        assert(pcall(s.get_option, s, name), "get_option refuses '" .. name .. "'")
        assert(pcall(s.set_option, s, name, s:get_option(name)), "set_option refuses '" .. name .. "'")
      end
    end)
    -- ...and no name set_option knows is missing from it.
    local body = c_function("csrc/lua/lws_stream.c", "static void set_option(")
    local listed = set_of(OPTIONS)
    for name in body:gmatch('strcmp%(name, "([%w_]+)"%)') do
      assert(listed[name], "set_option accepts '" .. name .. "': add it to OPTIONS and to " .. DOC)
    end
    -- The fields of the table-valued options, as get_option returns them.
    local fields = {}
    with_stream(function(s)
      for _, name in ipairs(OPTIONS) do
        local v = s:get_option(name)
        if type(v) == "table" then
          fields[name] = sorted_keys(v)
        end
      end
    end)
    assert(fields.timeout and fields.permessage_deflate)
    local c = checker()
    local s = section("Options")
    for _, name in ipairs(OPTIONS) do
      c.need(s.headings[name], "Options: a heading ### `" .. name .. "`")
      c.need(s.text:find("\n| `" .. escape(name) .. "` |"), "Options: a row | `" .. name .. "` | in the table")
      local sub = s.headings[name]
      for _, f in ipairs(fields[name] or {}) do
        c.need(sub and mentions(sub.text, f), ("Options: `%s` under ### `%s`"):format(f, name))
      end
    end
    c.done()
  end)

  it("documents every option of ws.connect", function()
    local c = checker()
    local s = section("ws.connect")
    -- The stream options ws.connect passes on are the stream's own.
    local listed = set_of(OPTIONS)
    for _, name in ipairs(lua_table_names("lua/luvws/client.lua", "stream_options")) do
      c.need(listed[name], "ws.connect passes on '" .. name .. "', which is not a stream option")
    end
    for _, name in ipairs(lua_table_names("lua/luvws/client.lua", "connect_options")) do
      c.need(mentions(s.text, name), "ws.connect: the option `" .. name .. "`")
    end
    c.done()
  end)

  it("documents every option of ws.server", function()
    local c = checker()
    local s = section("ws.server")
    for _, name in ipairs(lua_table_names("lua/luvws/server.lua", "options_known")) do
      c.need(mentions(s.text, name), "ws.server: the option `" .. name .. "`")
    end
    c.done()
  end)

  it("documents every option of ws.tls.context and ws.tls.wrap", function()
    local c = checker()
    local s = section("TLS")
    local names = {}
    for name in c_function("csrc/lua/lws_tls.c", "static int l_context("):gmatch('L, 1, "([%w_]+)"') do
      names[name] = true
    end
    for name in c_function("csrc/lua/lws_tls.c", "static int l_wrap("):gmatch('L, 3, "([%w_]+)"') do
      names[name] = true
    end
    assert(names.cert and names.servername, "no TLS option found in csrc/lua/lws_tls.c")
    for _, name in ipairs(sorted_keys(names)) do
      c.need(mentions(s.text, name), "TLS: the option `" .. name .. "`")
    end
    c.done()
  end)

  it("lists every luvws error name with its condition and message", function()
    local c = checker()
    local s = section("Errors")
    for _, name in ipairs(sorted_keys(ws.errors, function(k) return k:find("%l") ~= nil end)) do
      local row = s.text:match("\n(| `" .. escape(name) .. "` |[^\n]*)")
      c.need(row, "Errors: a row | `" .. name .. "` | condition | message | when |")
      if row then
        local cond, msg = row:match("^| `[^`]+` |%s*([%w_]*)%s*|%s*(.-)%s*|")
        c.need(cond == (ws.condition(name) or ""),
          ("Errors: `%s` has condition '%s', not '%s'"):format(name, ws.condition(name) or "", tostring(cond)))
        c.need(msg == ws.errors[name],
          ("Errors: `%s` has the message \"%s\", not \"%s\""):format(name, ws.errors[name], tostring(msg)))
      end
    end
    for _, name in ipairs(UV_NAMES) do
      c.need(ws.errors[name], "ws.errors has no libuv name " .. name)
      c.need(mentions(s.text, name), "Errors: the libuv name `" .. name .. "`")
    end
    c.done()
  end)

  it("names nothing that does not exist", function()
    -- Every function heading resolves to a live function: a renamed or
    -- removed name cannot stay documented.
    local server = assert(ws.server({ port = 0 }))
    local server_index = getmetatable(server).__index
    server:close(0, function() end)
    uv.run("nowait")
    uv.run("nowait")
    local c = checker()
    for _, s in ipairs(sections) do
      for name in pairs(s.headings) do
        local ok = true
        local path = name:match("^ws%.([%w_.]+)$")
        if path then
          local v = ws
          for part in path:gmatch("[^.]+") do
            v = type(v) == "table" and v[part] or nil
          end
          ok = v ~= nil
        elseif name:match("^stream:") then
          ok = stream_methods[name:match("^stream:(.*)$")] ~= nil
        elseif name:match("^server:") then
          ok = server_index[name:match("^server:(.*)$")] ~= nil
        elseif name:match("^server%.") then
          ok = set_of(SERVER_FIELDS)[name:match("^server%.(.*)$")] ~= nil
        elseif s.title == "Options" then
          ok = set_of(OPTIONS)[name] ~= nil
        end
        c.need(ok, ("%s: the heading `%s` names nothing that exists"):format(s.title, name))
      end
    end
    c.done()
  end)
end)
