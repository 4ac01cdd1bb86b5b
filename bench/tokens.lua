-- wrk script: one request per token, round-robin. Usage: wrk ... -s tokens.lua <url> -- <file>
-- <file> holds one token per line; "-" (or an empty file) sends no Authorization header. A line
-- "<Authorization value><TAB><proof>" sends that Authorization and the proof as DPoP (each once).
-- Every request is formatted once in init(), so a request costs wrk a table read, whatever
-- the number of tokens. done() prints one JSON line that bench/wrk.ts parses.
-- With WRK_DELAY_MS set, each connection waits that long after a response before its next
-- request: a paced load (for latency below saturation) instead of as fast as possible.
local pace = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pace ~= nil and pace > 0 then
  function delay()
    return pace
  end
end

local requests = {}
local count = 0
local next_index = 0

function init(args)
  local file = args[1]
  if file ~= nil and file ~= "-" then
    for line in io.lines(file) do
      if #line > 0 then
        count = count + 1
        -- "<Authorization value>\t<DPoP proof>" (bench/dpop.ts), or a bare bearer token.
        local authorization, proof = line:match("^([^\t]+)\t(.+)$")
        if proof ~= nil then
          requests[count] = wrk.format(nil, nil, { ["Authorization"] = authorization, ["DPoP"] = proof })
        else
          requests[count] = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. line })
        end
      end
    end
  end
  if count == 0 then
    count = 1
    requests[1] = wrk.format()
  end
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
