-- HTTP header tables for luvws: case-insensitive lookup, the original case
-- of every name kept for the wire, repeated fields kept in order.
--
--   local h = headers.new()
--   h["User-Agent"] = "game/1.0"        -- replaces every User-Agent field
--   h:add("Set-Cookie", "a=1")          -- adds one more field
--   h["user-agent"]                     --> "game/1.0"
--   h:values("set-cookie")              --> {"a=1", ...}
--   for name, value in pairs(h) do ... end   -- wire order, wire case
--
-- Indexing with a name returns the value of the only field with that name,
-- or the values of all such fields joined with ", " (RFC 9110 5.3), or nil.
-- Method names (add, set, get, values, remove, has, each) win over field
-- names when indexing; use h:get(name) for a field called like a method.

-- The key of the field list and the metatable are kept in the registry so
-- that every load of this module (a test runner that reloads modules, say)
-- and the C binding agree on them.
local shared = debug.getregistry()["luvws.headers"]
if not shared then
  shared = { fields = setmetatable({}, { __name = "luvws.headers.fields" }),
             mt = { __name = "luvws.headers" } }
  debug.getregistry()["luvws.headers"] = shared
end
local FIELDS = shared.fields

local methods = {}
local mt = shared.mt

local lower = string.lower
local concat = table.concat

local function fields(h)
  return rawget(h, FIELDS)
end

local function check_name(name, level)
  if type(name) ~= "string" or name == "" then
    error("header name must be a non-empty string", level + 1)
  end
end

local function to_value(v, level)
  local t = type(v)
  if t == "string" then
    return v
  elseif t == "number" or t == "boolean" then
    return tostring(v)
  end
  error("header value must be a string or a number, got " .. t, level + 1)
end

function methods.get(h, name)
  local f, lname = fields(h), lower(name)
  local found
  for i = 1, #f, 2 do
    if lower(f[i]) == lname then
      if found == nil then
        found = f[i + 1]
      elseif type(found) == "table" then
        found[#found + 1] = f[i + 1]
      else
        found = { found, f[i + 1] }
      end
    end
  end
  if type(found) == "table" then
    return concat(found, ", ")
  end
  return found
end

function methods.values(h, name)
  local f, lname, out = fields(h), lower(name), {}
  for i = 1, #f, 2 do
    if lower(f[i]) == lname then
      out[#out + 1] = f[i + 1]
    end
  end
  return out
end

function methods.has(h, name)
  local f, lname = fields(h), lower(name)
  for i = 1, #f, 2 do
    if lower(f[i]) == lname then
      return true
    end
  end
  return false
end

function methods.remove(h, name)
  local f, lname = fields(h), lower(name)
  local j = 1
  for i = 1, #f, 2 do
    if lower(f[i]) ~= lname then
      f[j], f[j + 1] = f[i], f[i + 1]
      j = j + 2
    end
  end
  for i = #f, j, -1 do
    f[i] = nil
  end
  return h
end

function methods.add(h, name, value)
  check_name(name, 2)
  local f = fields(h)
  f[#f + 1] = name
  f[#f + 1] = to_value(value, 2)
  return h
end

-- Replaces every field called name (any case) by one field per value, at
-- the place of the first one (or at the end), with the case given here.
function methods.set(h, name, value)
  check_name(name, 2)
  local f, lname = fields(h), lower(name)
  local values
  if value == nil then
    values = {}
  elseif type(value) == "table" then
    values = {}
    for i = 1, #value do
      values[i] = to_value(value[i], 2)
    end
  else
    values = { to_value(value, 2) }
  end
  local out, placed = {}, false
  for i = 1, #f, 2 do
    if lower(f[i]) == lname then
      if not placed then
        placed = true
        for _, v in ipairs(values) do
          out[#out + 1] = name
          out[#out + 1] = v
        end
      end
    else
      out[#out + 1] = f[i]
      out[#out + 1] = f[i + 1]
    end
  end
  if not placed then
    for _, v in ipairs(values) do
      out[#out + 1] = name
      out[#out + 1] = v
    end
  end
  rawset(h, FIELDS, out)
  return h
end

function methods.each(h)
  local f, i = fields(h), -1
  return function()
    i = i + 2
    if f[i] ~= nil then
      return f[i], f[i + 1]
    end
  end
end

mt.__index = function(h, k)
  local m = methods[k]
  if m ~= nil then
    return m
  end
  if type(k) == "string" then
    return methods.get(h, k)
  end
  return nil
end

mt.__newindex = function(h, k, v)
  if type(k) ~= "string" then
    error("header name must be a string", 2)
  end
  methods.set(h, k, v)
end

mt.__pairs = function(h)
  return methods.each(h), h, nil
end

mt.__len = function(h)
  return #fields(h) // 2
end

mt.__tostring = function(h)
  local f, out = fields(h), {}
  for i = 1, #f, 2 do
    out[#out + 1] = f[i] .. ": " .. f[i + 1]
  end
  return concat(out, "\r\n")
end

local M = { FIELDS = FIELDS, metatable = mt, methods = methods }

-- A new header table; init may be a header table or a plain table of
-- name = value (or name = {values}).
function M.new(init)
  local h = setmetatable({ [FIELDS] = {} }, mt)
  if init ~= nil then
    if getmetatable(init) == mt then
      for name, value in methods.each(init) do
        methods.add(h, name, value)
      end
    else
      local names = {}
      for name in pairs(init) do
        names[#names + 1] = name
      end
      table.sort(names)
      for _, name in ipairs(names) do
        local v = init[name]
        if type(v) == "table" then
          for _, one in ipairs(v) do
            methods.add(h, name, one)
          end
        else
          methods.add(h, name, v)
        end
      end
    end
  end
  return h
end

function M.is(h)
  return getmetatable(h) == mt
end

return M
