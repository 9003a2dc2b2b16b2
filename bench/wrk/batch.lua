-- POST /api/v1/usage/batch with 100 increments per request, on 100 nodes
-- per wrk thread (<prefix>-b<thread>-<i>; bench/run.py creates them first).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  local items = {}
  for i = 0, 99 do
    items[#items + 1] = '{"id":"' .. prefix() .. '-b' .. tid .. '-' .. i .. '","usage":{"messages":1}}'
  end
  wrk.method = "POST"
  wrk.path = "/api/v1/usage/batch"
  wrk.headers["Content-Type"] = "application/json"
  authorize()
  wrk.body = '{"mode":"increment","items":[' .. table.concat(items, ",") .. ']}'
end
