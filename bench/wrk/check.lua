-- POST /api/quota/check (counts nothing), one tenant per wrk thread.
-- The request is set once in init(): wrk's fast path.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  local prefix = os.getenv("BENCH_TENANT_PREFIX") or "bench"
  wrk.method = "POST"
  wrk.path = "/api/quota/check"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"tenant_id":"' .. prefix .. '-' .. tid .. '","message_count":1}'
end

function done(summary, latency, requests)
  io.write(string.format("BENCH non2xx=%d\n", summary.errors.status))
end
