-- wrk script: alternate GET /hello and POST /chat/{n} with a small JSON body.
local n = 0
local body = '{"message": "hello there", "n": 1}'
request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("POST", "/chat/" .. (n % 100), {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", "/hello")
end
