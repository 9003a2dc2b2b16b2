-- POST /api/quota/check (counts nothing), one tenant per wrk thread.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/quota/check"
  wrk.headers["Content-Type"] = "application/json"
  authorize()
  wrk.body = '{"tenant_id":"' .. prefix() .. '-' .. tid .. '","message_count":1}'
end
