-- POST /api/quota/increment, one tenant per wrk thread, one message per call.
-- The request is set once in init(), so wrk sends its pre-built request
-- (no per-request Lua: wrk stays on its fast path).
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  local prefix = os.getenv("BENCH_TENANT_PREFIX") or "bench"
  wrk.method = "POST"
  wrk.path = "/api/quota/increment"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"tenant_id":"' .. prefix .. '-' .. tid .. '","message_count":1,"bytes_sent":512}'
end

function done(summary, latency, requests)
  io.write(string.format("BENCH non2xx=%d\n", summary.errors.status))
end
