-- POST /api/v1/usage/batch with 100 increments per request, on 100 nodes
-- per wrk thread (<prefix>-b<thread>-<i>; bench/run.py creates them first).
-- The body is built once in init(): wrk's fast path.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  local prefix = os.getenv("BENCH_TENANT_PREFIX") or "bench"
  local items = {}
  for i = 0, 99 do
    items[#items + 1] = '{"id":"' .. prefix .. '-b' .. tid .. '-' .. i .. '","usage":{"messages":1}}'
  end
  wrk.method = "POST"
  wrk.path = "/api/v1/usage/batch"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"mode":"increment","items":[' .. table.concat(items, ",") .. ']}'
end

function done(summary, latency, requests)
  io.write(string.format("BENCH non2xx=%d\n", summary.errors.status))
end
