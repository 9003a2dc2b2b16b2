-- POST /api/v1/quotas/<leaf>/consume on a node three levels deep
-- (root -> mid -> leaf-<thread>; bench/run.py creates them first).
-- The request is set once in init(): wrk's fast path.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  local prefix = os.getenv("BENCH_TENANT_PREFIX") or "bench"
  wrk.method = "POST"
  wrk.path = "/api/v1/quotas/" .. prefix .. "-leaf-" .. tid .. "/consume"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"usage":{"messages":1}}'
end

function done(summary, latency, requests)
  io.write(string.format("BENCH non2xx=%d\n", summary.errors.status))
end
