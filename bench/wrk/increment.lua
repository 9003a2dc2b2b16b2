-- POST /api/quota/increment, one tenant per wrk thread, one message per call.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/quota/increment"
  wrk.headers["Content-Type"] = "application/json"
  authorize()
  wrk.body = '{"tenant_id":"' .. prefix() .. '-' .. tid .. '","message_count":1,"bytes_sent":512}'
end
