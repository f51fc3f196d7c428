-- wrk script: POST /v1/report with pre-built bodies.
-- BODY_KIND=single: one item per request; BODY_KIND=batch100: an array of 100 items.
-- ACCOUNTS: a file with one account name per line (items pick accounts round-robin
-- from a random start, so every account is touched).
-- The API path has no daily limit in the presets, so no report makes the account due:
-- this measures ingestion, not the decision to clear (see docs/BENCHMARKS.md).

local kind = os.getenv("BODY_KIND") or "single"
local names = {}
local f = io.open(os.getenv("ACCOUNTS") or "", "r")
if f then
    for line in f:lines() do names[#names + 1] = line end
    f:close()
end
if #names == 0 then names = { "acct0" } end

local bodies = {}
local next_body = 1

local function item(i)
    return string.format('{"account":"%s","api":"/cgi-bin/bench/item","calls":%d}',
        names[(i % #names) + 1], (i % 7) + 1)
end

function init(args)
    math.randomseed(os.time() + (tonumber(tostring({}):sub(8), 16) or 0))
    local base = math.random(0, 1000000)
    for b = 1, 64 do
        if kind == "batch100" then
            local items = {}
            for j = 1, 100 do items[j] = item(base + b * 100 + j) end
            bodies[b] = "[" .. table.concat(items, ",") .. "]"
        else
            bodies[b] = item(base + b)
        end
    end
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    local body = bodies[next_body]
    next_body = next_body % #bodies + 1
    return wrk.format(nil, "/v1/report", nil, body)
end

function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    io.write(string.format("RESULT rps=%.0f p50=%.3f p99=%.3f non2xx=%d errors=%d\n",
        summary.requests / secs,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.errors.status,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
