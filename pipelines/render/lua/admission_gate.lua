-- SONIC admission gate: refuse NEW clients while the deployment is overloaded.
--
-- SONIC clients call RepositoryIndex once when they start. Envoy runs this script only on that
-- route (every other route disables the filter), asks Prometheus for the deployment's load metric
-- and, above the threshold, answers with gRPC UNAVAILABLE so the client falls back to local CPU
-- inference instead of piling onto a saturated server. Clients already running are never touched.
--
-- The script is the same for every deployment: its parameters come from the route's metadata
-- (namespace "envoy.filters.http.lua"), written by pipelines/render/envoy/gate.py:
--   threshold            number   refuse when load > threshold
--   cache_for_ms         number   reuse one Prometheus answer this long (per Envoy worker)
--   query_timeout_ms     number   timeout of the Prometheus call
--   on_prometheus_error  string   "open" admits, "closed" refuses when the load is unknown
--   cluster              string   Envoy cluster that reaches Prometheus
--   path                 string   "/api/v1/query?query=<urlencoded PromQL>"
--   authority            string   Host header for Prometheus
--   token_file           string   bearer token file ("" = no auth); read at each refresh
--
-- Envoy's Lua is LuaJIT (Lua 5.1): no integer division, no goto, no utf8 library.

local MAX_BODY = 1048576   -- a scalar answer is tiny; anything bigger is not what we asked for
local MAX_DEPTH = 32       -- nesting limit of the JSON parser (garbage must not blow the stack)
local NULL = {}            -- JSON null (a Lua nil would vanish from tables)

-- Module-level state lives once per Envoy worker thread.
local cache = { load = nil, why = "not queried yet", expires_ms = -1, refreshing_until_ms = -1 }

---------------------------------------------------------------------------------------------------
-- A small strict JSON parser. decode(text) returns the value or raises {json = "reason"}.

local ESCAPES = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t' }

local function utf8_char(cp)
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return string.char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
    0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local function decode(text)
  local pos = 1
  local depth = 0

  local function fail(reason)
    error({ json = reason .. " at byte " .. pos }, 0)
  end

  local function skip_space()
    pos = string.find(text, "[^ \t\r\n]", pos) or (#text + 1)
  end

  local parse_value

  local function parse_string()
    pos = pos + 1 -- opening quote
    local parts = {}
    while true do
      local stop = string.find(text, '[%z\1-\31"\\]', pos)
      if stop == nil then
        fail("unterminated string")
      end
      parts[#parts + 1] = string.sub(text, pos, stop - 1)
      local c = string.sub(text, stop, stop)
      if c == '"' then
        pos = stop + 1
        return table.concat(parts)
      elseif c == "\\" then
        local e = string.sub(text, stop + 1, stop + 1)
        if e == "u" then
          local hex = string.sub(text, stop + 2, stop + 5)
          if not string.find(hex, "^%x%x%x%x$") then
            pos = stop
            fail("bad \\u escape")
          end
          local cp = tonumber(hex, 16)
          pos = stop + 6
          -- A UTF-16 surrogate pair (\uD83D\uDE00) is one character beyond the BMP.
          local low = string.match(text, "^\\u([dD][c-fC-F]%x%x)", pos)
          if cp >= 0xD800 and cp <= 0xDBFF and low then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(low, 16) - 0xDC00)
            pos = pos + 6
          end
          parts[#parts + 1] = utf8_char(cp)
        elseif ESCAPES[e] then
          parts[#parts + 1] = ESCAPES[e]
          pos = stop + 2
        else
          pos = stop
          fail("bad escape")
        end
      else
        pos = stop
        fail("control character in string")
      end
    end
  end

  local function parse_number()
    local start = pos
    if string.sub(text, pos, pos) == "-" then
      pos = pos + 1
    end
    local int = string.match(text, "^%d+", pos)
    if int == nil then
      fail("bad number")
    end
    pos = pos + #int
    local frac = string.match(text, "^%.%d+", pos)
    if frac then
      pos = pos + #frac
    end
    local exp = string.match(text, "^[eE][+-]?%d+", pos)
    if exp then
      pos = pos + #exp
    end
    return tonumber(string.sub(text, start, pos - 1))
  end

  local function parse_array()
    pos = pos + 1
    local out = {}
    skip_space()
    if string.sub(text, pos, pos) == "]" then
      pos = pos + 1
      return out
    end
    while true do
      out[#out + 1] = parse_value()
      skip_space()
      local c = string.sub(text, pos, pos)
      pos = pos + 1
      if c == "]" then
        return out
      elseif c ~= "," then
        pos = pos - 1
        fail("expected , or ]")
      end
    end
  end

  local function parse_object()
    pos = pos + 1
    local out = {}
    skip_space()
    if string.sub(text, pos, pos) == "}" then
      pos = pos + 1
      return out
    end
    while true do
      skip_space()
      if string.sub(text, pos, pos) ~= '"' then
        fail("expected a key")
      end
      local key = parse_string()
      skip_space()
      if string.sub(text, pos, pos) ~= ":" then
        fail("expected :")
      end
      pos = pos + 1
      out[key] = parse_value()
      skip_space()
      local c = string.sub(text, pos, pos)
      pos = pos + 1
      if c == "}" then
        return out
      elseif c ~= "," then
        pos = pos - 1
        fail("expected , or }")
      end
    end
  end

  parse_value = function()
    skip_space()
    local c = string.sub(text, pos, pos)
    if c == "{" or c == "[" then
      depth = depth + 1
      if depth > MAX_DEPTH then
        fail("nested too deeply")
      end
      local v
      if c == "{" then
        v = parse_object()
      else
        v = parse_array()
      end
      depth = depth - 1
      return v
    elseif c == '"' then
      return parse_string()
    elseif c == "-" or string.find(c, "^%d$") then
      return parse_number()
    elseif string.sub(text, pos, pos + 3) == "true" then
      pos = pos + 4
      return true
    elseif string.sub(text, pos, pos + 4) == "false" then
      pos = pos + 5
      return false
    elseif string.sub(text, pos, pos + 3) == "null" then
      pos = pos + 4
      return NULL
    end
    fail("unexpected " .. (c == "" and "end of input" or "character"))
  end

  local value = parse_value()
  skip_space()
  if pos <= #text then
    fail("trailing characters")
  end
  return value
end

---------------------------------------------------------------------------------------------------
-- Prometheus answers. Sample values are strings: "12.5", "1e3", "NaN", "+Inf", "-Inf".

-- The number in a Prometheus sample string, or nil when it is not a usable number (NaN, garbage).
local function sample_number(s)
  if type(s) ~= "string" then
    return nil
  end
  if s == "+Inf" or s == "Inf" then
    return math.huge
  elseif s == "-Inf" then
    return -math.huge
  end
  -- Only plain decimals: tonumber would also accept hex ("0x10") and, on some builds, "nan".
  if not (string.find(s, "^[+-]?%d+%.?%d*$") or string.find(s, "^[+-]?%d*%.%d+$")
      or string.find(s, "^[+-]?%d+%.?%d*[eE][+-]?%d+$") or string.find(s, "^[+-]?%d*%.%d+[eE][+-]?%d+$")) then
    return nil
  end
  local v = tonumber(s)
  if v == nil or v ~= v then
    return nil
  end
  return v
end

-- The value of one [timestamp, "value"] pair (the timestamp may be an integer or a float).
local function pair_value(pair)
  if type(pair) ~= "table" or type(pair[1]) ~= "number" then
    return nil
  end
  return sample_number(pair[2])
end

-- load_from_answer(decoded JSON) -> number, or nil and the reason the load is unknown.
-- A vector with several series counts its highest value (the most loaded is what matters).
local function load_from_answer(doc)
  if type(doc) ~= "table" or doc == NULL then
    return nil, "answer is not a JSON object"
  end
  if doc.status ~= "success" then
    local detail = type(doc.error) == "string" and (": " .. doc.error) or ""
    return nil, "Prometheus status " .. tostring(doc.status) .. detail
  end
  local data = doc.data
  if type(data) ~= "table" then
    return nil, "answer has no data"
  end
  local result = data.result
  if data.resultType == "scalar" then
    local v = pair_value(result)
    if v == nil then
      return nil, "scalar is not a number"
    end
    return v
  elseif data.resultType == "vector" then
    if type(result) ~= "table" or #result == 0 then
      return nil, "empty result"
    end
    local best = nil
    for _, series in ipairs(result) do
      local v = type(series) == "table" and pair_value(series.value) or nil
      if v ~= nil and (best == nil or v > best) then
        best = v
      end
    end
    if best == nil then
      return nil, "no series has a numeric value"
    end
    return best
  end
  return nil, "unexpected resultType " .. tostring(data.resultType)
end

-- parse_load(body) -> number, or nil and a reason. Never raises.
local function parse_load(body)
  if type(body) ~= "string" or body == "" then
    return nil, "empty body"
  end
  if #body > MAX_BODY then
    return nil, "answer too large"
  end
  local ok, doc = pcall(decode, body)
  if not ok then
    local reason = type(doc) == "table" and doc.json or tostring(doc)
    return nil, "invalid JSON (" .. reason .. ")"
  end
  return load_from_answer(doc)
end

---------------------------------------------------------------------------------------------------
-- Envoy side.

local function read_token(path)
  local f = io.open(path, "r")
  if f == nil then
    return nil
  end
  local token = f:read("*a")
  f:close()
  if token == nil then
    return nil
  end
  token = string.gsub(token, "^%s+", "")
  token = string.gsub(token, "%s+$", "")
  if token == "" then
    return nil
  end
  return token
end

-- The gate's parameters from the route metadata, or nil and the name of a missing one.
-- Envoy may hand metadata numbers over as strings (YAML scalars): accept both.
local function settings(handle)
  local meta = handle:metadata()
  local cfg = {
    on_error = meta:get("on_prometheus_error"),
    cluster = meta:get("cluster"),
    path = meta:get("path"),
    authority = meta:get("authority"),
    token_file = meta:get("token_file") or "",
  }
  for _, key in ipairs({ "threshold", "cache_for_ms", "query_timeout_ms" }) do
    local raw = meta:get(key)
    local v = type(raw) == "number" and raw or sample_number(raw)
    if v == nil or v == math.huge or v == -math.huge then
      return nil, key
    end
    cfg[key] = v
  end
  for _, key in ipairs({ "on_error", "cluster", "path", "authority", "token_file" }) do
    if type(cfg[key]) ~= "string" then
      return nil, key
    end
  end
  return cfg
end

local function query_prometheus(handle, cfg)
  local headers = {
    [":method"] = "GET",
    [":path"] = cfg.path,
    [":authority"] = cfg.authority,
    ["accept"] = "application/json",
  }
  if cfg.token_file ~= "" then
    local token = read_token(cfg.token_file)
    if token == nil then
      return nil, "cannot read the Prometheus token file " .. cfg.token_file
    end
    headers["authorization"] = "Bearer " .. token
  end
  local ok, resp_headers, body = pcall(handle.httpCall, handle, cfg.cluster, headers, nil,
    { timeout_ms = math.max(1, math.floor(cfg.query_timeout_ms)), asynchronous = false })
  if not ok then
    return nil, "Prometheus call failed: " .. tostring(resp_headers)
  end
  local status = type(resp_headers) == "table" and resp_headers[":status"] or nil
  if status ~= "200" then
    return nil, "Prometheus answered HTTP " .. tostring(status)
  end
  return parse_load(body)
end

-- The current load (cached per worker for cache_for_ms), or nil and why it is unknown;
-- the third result is true when this call asked Prometheus (so failures are logged once).
local function now_ms(handle)
  if handle.timestamp ~= nil then
    return handle:timestamp()
  end
  return os.time() * 1000 -- older Envoys without timestamp(): second resolution is enough here
end

local function current_load(handle, cfg)
  local now = now_ms(handle)
  if now < cache.expires_ms then
    return cache.load, cache.why, false
  end
  -- Another request on this worker is already asking: reuse the last answer rather than
  -- sending a second query (bounded, in case that request's coroutine never resumes).
  if now < cache.refreshing_until_ms and cache.expires_ms >= 0 then
    return cache.load, cache.why, false
  end
  cache.refreshing_until_ms = now + cfg.query_timeout_ms + 1000
  local load, why = query_prometheus(handle, cfg)
  cache.load, cache.why = load, why
  cache.expires_ms = now_ms(handle) + cfg.cache_for_ms
  cache.refreshing_until_ms = -1
  return load, why, true
end

-- A trailers-only gRPC answer: HTTP 200, grpc-status 14 (UNAVAILABLE), no body.
local function refuse(handle, message)
  handle:respond({
    [":status"] = "200",
    ["content-type"] = "application/grpc",
    ["grpc-status"] = "14",
    ["grpc-message"] = message,
  }, nil)
end

function envoy_on_request(handle)
  local cfg, missing = settings(handle)
  if cfg == nil then
    handle:logErr("admission gate: route metadata lacks " .. missing .. "; admitting")
    return
  end
  local load, why, fresh = current_load(handle, cfg)
  if load == nil then
    local closed = cfg.on_error == "closed"
    if fresh then
      handle:logWarn("admission gate: load unknown (" .. tostring(why) .. "); "
        .. (closed and "refusing new clients (fail closed)" or "admitting new clients (fail open)"))
    end
    if closed then
      refuse(handle, "SONIC admission gate: server load unknown, use local inference")
    end
    return
  end
  if load > cfg.threshold then
    handle:logDebug("admission gate: load " .. tostring(load) .. " above " .. tostring(cfg.threshold))
    refuse(handle, "SONIC admission gate: server overloaded (load " .. string.format("%.3g", load)
      .. " > " .. string.format("%.3g", cfg.threshold) .. "), use local inference")
  end
end

-- Exposed for unit tests of the parser outside Envoy; Envoy ignores globals other than its hooks.
sonic_admission_gate = { parse_load = parse_load, decode = decode, sample_number = sample_number, null = NULL }
