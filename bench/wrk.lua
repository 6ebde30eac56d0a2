-- wrk script for `textclf bench`: POST JSON bodies read from a file (one per line), count every
-- response by status, optionally pause between requests, and print one JSON summary at the end.
-- Arguments (after `--`): BODIES_FILE [THINK_MS] [AUTHORIZATION]

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests_list = {}
local next_index = 1
statuses = {}
local think_ms = 0

function init(args)
  local path = args[1]
  think_ms = tonumber(args[2] or "0") or 0
  local headers = { ["Content-Type"] = "application/json" }
  if args[3] ~= nil and args[3] ~= "" then
    headers["Authorization"] = args[3]
  end
  for line in io.lines(path) do
    if #line > 0 then
      table.insert(requests_list, wrk.format("POST", nil, headers, line))
    end
  end
  if #requests_list == 0 then
    error("no request bodies in " .. path)
  end
  -- threads start at different offsets so they do not send the same text at the same time
  next_index = (id * 7919) % #requests_list + 1
  math.randomseed(1000 + id)
end

function request()
  local r = requests_list[next_index]
  next_index = next_index % #requests_list + 1
  return r
end

function delay()
  if think_ms <= 0 then
    return 0
  end
  -- exponential pauses: arrivals look like independent users, not a metronome
  return math.floor(-math.log(1 - math.random()) * think_ms)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '__wrk__{"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "statuses": {%s}, "socket_errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, table.concat(parts, ", "), e.connect, e.read, e.write,
    e.timeout))
end
