-- wrk script for the page workload: request n asks rendition n % 6 of page photo n // 6, so
-- the six renditions of one new photo arrive together, spread over the connections as a
-- browser's would be. Arguments (after `--`): a path template with {n} (the photo's number,
-- modulo the number of photos made for the run), {w} (320, 640, 1280) and {fm} (webp, jpeg);
-- the counter's start; the number of photos; optionally the requests per photo (6; 1 with a
-- template without {w} and {fm}: every request a new source, for cold single renders).
-- Run with -t1 (each thread has its own counter).
-- At the end it prints "issued <n>": requests sent, answered or still in flight.
local renditions = {
  {"320", "webp"}, {"640", "webp"}, {"1280", "webp"},
  {"320", "jpeg"}, {"640", "jpeg"}, {"1280", "jpeg"},
}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  template = args[1]
  start = tonumber(args[2])
  counter = start
  photos = tonumber(args[3])
  per = tonumber(args[4] or "6")
end

function request()
  local n = counter - start
  counter = counter + 1
  local width, format = renditions[n % 6 + 1][1], renditions[n % 6 + 1][2]
  local path = template:gsub("{n}", tostring(math.floor(n / per) % photos)):gsub("{w}", width):gsub("{fm}", format)
  return wrk.format(nil, path)
end

function done(summary, latency, requests)
  local issued = 0
  for _, thread in ipairs(threads) do
    issued = issued + thread:get("counter") - thread:get("start")
  end
  io.write(string.format("issued %d\n", issued))
end
