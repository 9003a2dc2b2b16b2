-- POST /api/v1/quotas/<leaf>/consume on a node three levels deep
-- (root -> mid -> leaf-<thread>; bench/run.py creates them first).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/quotas/" .. prefix() .. "-leaf-" .. tid .. "/consume"
  wrk.headers["Content-Type"] = "application/json"
  authorize()
  wrk.body = '{"usage":{"messages":1}}'
end
