#!lua name=crawler_v1
-- The Redis frontier's only writer: every change to a crawl's state is one of these functions,
-- so each is atomic. Every call gets the crawl's keys (one hash tag, one slot) in the order of
-- crawler/frontier/redis_codec.py KEY_NAMES, and ARGV[1] = '' (server time) or a test clock in ms.
--
-- q       zset  host \0 priority(10) id(12), scores 0: per-host ranges BYLEX, best first
-- req     hash  id -> request record          seen  set of 8-byte fingerprints
-- ready   zset  host -> earliest start (ms), for hosts with queued work and a free slot
-- host    hash  host -> "active,limit,delay_ms,next_ms,known" (known: robots.txt applied)
-- lease   hash  id -> flag(1: mid-attempt) attempt(0-9) worker(32) grant(12) q member
-- lexp    zset  id -> lease expiry            (a grant number is unique: stale calls miss)
-- workers zset  worker -> heartbeat expiry    items stream, ids "<item id>-0"
-- export  hash  feed path -> "last item,offset" (its checkpoint), @owner (the exporter),
--               @trimmed (the last item that left `items`: every feed had written it)
-- held    hash  worker \0 host -> slots of the host it holds (beside the host's active count)
-- hungry  zset  worker -> when a lease call last got fewer requests than it had free slots
-- meta    hash  spider, state, seeded, seeder, seq, item_seq, defaults, spider_state, runs,
--               starts (the seeds' origins, JSON: start hosts every worker may reach if private),
--               created_ms (the first join), ended_ms (the last finish or stop)
-- A crawl whose meta is gone (its keys deleted under its workers) is never written again by a
-- worker's call: the calls that write return a nil state (false) instead, and the worker ends.

local VERSION = '@VERSION@'
local K = {}
local NAMES = {'meta', 'q', 'req', 'seen', 'ready', 'host', 'lease', 'lexp', 'workers',
               'items', 'counts', 'stats', 'robots', 'export', 'commits', 'held', 'hungry'}
local HUNGRY_MS = 250  -- a worker that got too few within this long is a rival for slots
local HUNGRY_WAKE_MS = 20  -- and asks again this soon while others are held to their share
local WORKER_LEN = 32
local HOLDER_END = WORKER_LEN + 14  -- the worker and its grant number, after flag and attempt
local MEMBER_AT = HOLDER_END + 1

local function bind(keys)
  for i, name in ipairs(NAMES) do K[name] = keys[i] end
end

local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function host_get(host)
  local v = redis.call('HGET', K.host, host)
  if not v then
    local d = redis.call('HMGET', K.meta, 'limit', 'delay_ms', 'obey')
    local obey = d[3] == '1'
    local one = obey or tonumber(d[2]) > 0  -- robots.txt not known yet, or a delay
    return {active = 0, limit = one and 1 or tonumber(d[1]), delay = tonumber(d[2]),
            next = 0, known = obey and 0 or 1}
  end
  local a, l, d, n, k = string.match(v, '^(%-?%d+),(%d+),(%d+),(%-?%d+),(%d)$')
  return {active = tonumber(a), limit = tonumber(l), delay = tonumber(d), next = tonumber(n),
          known = tonumber(k)}
end

local function host_put(host, h)
  redis.call('HSET', K.host, host,
    string.format('%d,%d,%d,%d,%d', h.active, h.limit, h.delay, h.next, h.known))
end

local function has_work(host)
  local first = redis.call('ZRANGE', K.q, '[' .. host .. '\0', '(' .. host .. '\1',
    'BYLEX', 'LIMIT', 0, 1)
  return #first > 0
end

-- A host is in `ready` exactly when it has queued work and a free slot.
local function touch(host, h)
  if h.active < h.limit and has_work(host) then
    redis.call('ZADD', K.ready, h.next, host)
  else
    redis.call('ZREM', K.ready, host)
  end
end

local function guard(delay)
  if delay <= 0 then return 0 end
  return math.max(10, math.floor(delay * 0.02))
end

-- One attempt starts on the host now: its slot is taken and its delay runs from now.
local function start(h, now)
  h.active = h.active + 1
  if h.delay > 0 then h.next = math.max(h.next, now) + h.delay + guard(h.delay) end
end

-- The worker's count of the host's slots, changed wherever the host's active count is.
local function hold(worker, host, delta)
  local field = worker .. '\0' .. host
  if redis.call('HINCRBY', K.held, field, delta) <= 0 then redis.call('HDEL', K.held, field) end
end

local function alive(worker, now)
  if not worker or worker == '' then return false end
  local expiry = redis.call('ZSCORE', K.workers, worker)
  return expiry ~= false and expiry ~= nil and tonumber(expiry) > now
end

local function host_of_member(member)
  return string.sub(member, 1, string.find(member, '\0', 1, true) - 1)
end

local function worker_of(v)
  return string.sub(v, 3, WORKER_LEN + 2)
end

-- Drop a lease; its host slot is freed if the attempt was under way; requeue it if asked.
local function drop_lease(id, v, requeue)
  local member = string.sub(v, MEMBER_AT)
  local host = host_of_member(member)
  redis.call('HDEL', K.lease, id)
  redis.call('ZREM', K.lexp, id)
  if requeue then redis.call('ZADD', K.q, 0, member) end
  local h = host_get(host)
  if string.sub(v, 1, 1) == '1' then
    h.active = math.max(0, h.active - 1)
    host_put(host, h)
    hold(worker_of(v), host, -1)
  end
  touch(host, h)
end

-- Whether lease `v` is this grant (worker .. grant number) still.
local function owned(v, holder)
  return v and string.sub(v, 3, HOLDER_END) == holder
end

-- An attempt ("id:attempt digit:grant") ended since the worker's last call: its host slot is
-- free again, and a delayed host rests its delay from now. One whose retry already took the
-- slot over (reacquire), or of a grant that is gone (reaped, perhaps granted anew), is ignored.
local function ended(worker, arg, now)
  local id, attempt, grant = string.match(arg, '^(%d+):(%d):(%d+)$')
  local v = redis.call('HGET', K.lease, id)
  if not owned(v, worker .. grant) or string.sub(v, 1, 2) ~= '1' .. attempt then return end
  redis.call('HSET', K.lease, id, '0' .. string.sub(v, 2))
  local host = host_of_member(string.sub(v, MEMBER_AT))
  local h = host_get(host)
  h.active = math.max(0, h.active - 1)
  hold(worker, host, -1)
  -- the delay runs from the answer too (it came before this report): time between a grant and
  -- the request's bytes reaching the host never shortens the host's rest
  if h.delay > 0 then h.next = math.max(h.next, now + h.delay) end
  host_put(host, h)
  touch(host, h)
end

-- Leases past their expiry: a live owner's are renewed to its heartbeat, a dead owner's
-- requests are queued again.
local function reap(now)
  redis.call('ZREMRANGEBYSCORE', K.workers, '-inf', now)
  local due = redis.call('ZRANGE', K.lexp, '-inf', now, 'BYSCORE', 'LIMIT', 0, 200)
  for _, id in ipairs(due) do
    local v = redis.call('HGET', K.lease, id)
    if not v then
      redis.call('ZREM', K.lexp, id)
    else
      local expiry = redis.call('ZSCORE', K.workers, worker_of(v))
      if expiry then
        redis.call('ZADD', K.lexp, expiry, id)
      else
        drop_lease(id, v, true)
        redis.call('HINCRBY', K.counts, 'reclaimed', 1)
      end
    end
  end
end

local function committed()
  local c = redis.call('HMGET', K.counts, 'done', 'failed', 'skipped')
  return (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) + (tonumber(c[3]) or 0)
end

-- How many more requests max_pages allows to be handed out (committed + leased count).
local function budget()
  local max = tonumber(redis.call('HGET', K.meta, 'max_pages')) or 0
  if max <= 0 then return math.huge end
  return max - committed() - redis.call('HLEN', K.lease)
end

-- The exact finish: nothing leased, seeding done, and nothing queued (or the budget spent).
-- Requests enter `q` only through commit, with the release of their parent's lease, so once
-- true it stays true: `finished` is sticky.
local function settle(now)
  local state = redis.call('HGET', K.meta, 'state')
  if redis.call('HLEN', K.lease) > 0 then return state end
  if state == 'running' and redis.call('HGET', K.meta, 'seeded') == '1'
      and (redis.call('ZCARD', K.q) == 0 or budget() <= 0) then
    state = 'finished'
  elseif state == 'stopping' then
    state = 'stopped'
  else
    return state
  end
  redis.call('HSET', K.meta, 'state', state, 'ended_ms', now)
  return state
end

-- The crawl's keys were deleted while workers ran: nothing may be written back.
local function gone()
  return redis.call('EXISTS', K.meta) == 0
end

local function add_child(fp, host, prio, record, reply)
  if fp ~= '' and redis.call('SADD', K.seen, fp) == 0 then
    reply[4] = reply[4] + 1
    return
  end
  local id = redis.call('HINCRBY', K.meta, 'seq', 1)
  redis.call('ZADD', K.q, 0, host .. '\0' .. prio .. string.format('%012d', id))
  redis.call('HSET', K.req, id, record)
  local h = host_get(host)
  if redis.call('HEXISTS', K.host, host) == 0 then host_put(host, h) end
  if h.active < h.limit then redis.call('ZADD', K.ready, h.next, host) end
  reply[3] = reply[3] + 1
end

local function join(keys, args)
  bind(keys)
  local now = clock(args[1])
  local worker, ttl, spider = args[2], tonumber(args[3]), args[4]
  local owner = redis.call('HGET', K.meta, 'spider')
  if not owner then
    redis.call('HSET', K.meta, 'spider', spider, 'state', 'running', 'seeded', '0',
      'seq', 0, 'item_seq', 0, 'limit', args[5], 'delay_ms', args[6], 'obey', args[7],
      'max_pages', args[8], 'created_ms', now)
  elseif owner ~= spider then
    return {'wrong_spider', owner}
  end
  reap(now)
  settle(now)  -- a stop that only waited for the leases just reaped ends here, so this run resumes it
  if redis.call('HGET', K.meta, 'state') == 'stopped' then
    redis.call('HSET', K.meta, 'state', 'running')  -- a stopped crawl resumes
  end
  redis.call('ZADD', K.workers, now + ttl, worker)
  local seeder = 0
  if args[9] == '1' and redis.call('HGET', K.meta, 'seeded') ~= '1'
      and not alive(redis.call('HGET', K.meta, 'seeder'), now) then
    redis.call('HSET', K.meta, 'seeder', worker)
    seeder = 1
  end
  return {settle(now), seeder, redis.call('HGET', K.meta, 'created_ms')}
end

-- Every worker beats, crawling or not (a stopping crawl's workers lease nothing, an exporter
-- never does): so a dead worker's leases are reaped, and the finish or stop settled, here too.
local function heartbeat(keys, args)
  bind(keys)
  local now = clock(args[1])
  local worker, ttl = args[2], tonumber(args[3])
  if gone() then return {false, 0, ''} end
  local was = alive(worker, now)
  reap(now)
  redis.call('ZADD', K.workers, now + ttl, worker)
  return {settle(now), was and 0 or 1, redis.call('HGET', K.meta, 'created_ms')}
end

local function seeding_done(keys, args)
  bind(keys)
  local now = clock(args[1])
  if redis.call('HGET', K.meta, 'seeder') == args[2] then
    redis.call('HSET', K.meta, 'seeded', '1', 'seeder', '')
  end
  return settle(now)
end

-- A seeder that died (or left) before seeding_done: the crawling worker asking takes the role
-- over, or the crawl could never finish. 1 when it did.
local function take_seeding(worker, now)
  if redis.call('HGET', K.meta, 'seeded') == '1' then return 0 end
  local seeder = redis.call('HGET', K.meta, 'seeder')
  if seeder == worker or alive(seeder, now) then return 0 end
  redis.call('HSET', K.meta, 'seeder', worker)
  return 1
end

-- Grant up to `want` requests whose host may be hit now, and up to `extra` more from hosts
-- without a delay, the worker's reserve (ARGV: now, worker, want, host or '', extra, then the
-- attempts that ended); only crawling workers call it. Returns {state, wake_ms or -1
-- (-2: heartbeat first), 1 if this worker is the seeder now else 0, the size of meta starts
-- (committed with the seeds, so a grant's start host is in it), id, grant, record, ...}.
local function lease(keys, args)
  bind(keys)
  local now = clock(args[1])
  local worker, want, only, extra = args[2], tonumber(args[3]), args[4], tonumber(args[5])
  for i = 6, #args do ended(worker, args[i], now) end
  reap(now)
  local state = redis.call('HGET', K.meta, 'state')
  local reply = {state, -1, 0, redis.call('HSTRLEN', K.meta, 'starts')}
  local expiry = redis.call('ZSCORE', K.workers, worker)
  if state == 'running' and expiry then reply[3] = take_seeding(worker, now) end
  local left = budget()
  want = math.min(want, left)
  extra = math.min(extra, left - want)
  if state ~= 'running' or want + extra <= 0 then
    reply[1] = settle(now)
    return reply
  end
  if not expiry then  -- its heartbeat lapsed: nothing for it until it beats again
    reply[1], reply[2] = settle(now), -2
    return reply
  end
  local hosts
  if only ~= '' then
    hosts = {only}
  else
    hosts = redis.call('ZRANGE', K.ready, '-inf', now, 'BYSCORE', 'LIMIT', 0, 64)
  end
  -- The fair share: while other workers got fewer requests than they had room for, this one
  -- holds at most its share of a host's slots (the limit over the hungry workers, itself
  -- included), so a slot it frees goes to them; with no rival it may take every free slot.
  redis.call('ZREMRANGEBYSCORE', K.hungry, '-inf', now - HUNGRY_MS)
  local rivals = redis.call('ZCARD', K.hungry)
  if redis.call('ZSCORE', K.hungry, worker) then rivals = rivals - 1 end
  for _, host in ipairs(hosts) do
    if want + extra <= 0 then break end
    local h = host_get(host)
    if h.next <= now then
      local room = h.limit - h.active
      if h.delay > 0 then room = math.min(room, 1) end
      if rivals > 0 and room > 0 then
        local held = tonumber(redis.call('HGET', K.held, worker .. '\0' .. host)) or 0
        local share = math.ceil(h.limit / (rivals + 1)) - held
        if share < room then
          room = share
          redis.call('HSET', K.meta, 'capped_ms', now)  -- slots left for the hungry ones
        end
      end
      -- the reserve (extra) only from hosts with no delay and robots.txt applied: a grant
      -- held a moment before it starts changes no spacing there
      local spare = (h.delay == 0 and h.known == 1) and extra or 0
      room = math.min(room, want + spare)
      if room > 0 then
        local members = redis.call('ZRANGE', K.q, '[' .. host .. '\0', '(' .. host .. '\1',
          'BYLEX', 'LIMIT', 0, room)
        for _, member in ipairs(members) do
          local id = tostring(tonumber(string.sub(member, -12)))
          local grant = string.format('%012d', redis.call('HINCRBY', K.meta, 'grant_seq', 1))
          redis.call('ZREM', K.q, member)
          redis.call('HSET', K.lease, id, '10' .. worker .. grant .. member)
          redis.call('ZADD', K.lexp, expiry, id)
          start(h, now)
          hold(worker, host, 1)
          reply[#reply + 1] = id
          reply[#reply + 1] = grant
          reply[#reply + 1] = redis.call('HGET', K.req, id)
          if want > 0 then want = want - 1 else extra = extra - 1 end
        end
        host_put(host, h)
      end
      touch(host, h)
    end
  end
  reply[1] = settle(now)
  local soon = redis.call('ZRANGE', K.ready, '(' .. now, '+inf', 'BYSCORE', 'LIMIT', 0, 1,
    'WITHSCORES')
  local wake = soon[2] and tonumber(soon[2]) or nil
  local lapse = redis.call('ZRANGE', K.lexp, 0, 0, 'WITHSCORES')
  if lapse[2] and (wake == nil or tonumber(lapse[2]) < wake) then wake = tonumber(lapse[2]) end
  if want > 0 then
    redis.call('ZADD', K.hungry, now, worker)
    -- others were held to their share just now: the slots they free are for the hungry ones
    local capped = tonumber(redis.call('HGET', K.meta, 'capped_ms')) or 0
    if capped >= now - HUNGRY_MS and (wake == nil or wake > now + HUNGRY_WAKE_MS) then
      wake = now + HUNGRY_WAKE_MS
    end
  else
    redis.call('ZREM', K.hungry, worker)
  end
  if wake then reply[2] = math.max(0, wake - now) end
  return reply
end

-- A retry's next attempt (ARGV: now, worker, id, attempt digit, retake, grant): 0 when its slot
-- is taken now, -1 when the lease is lost, else ms to wait before asking again. If the
-- previous attempt's end has not arrived yet, the retry takes its slot over, unless the host
-- must rest first (a delay, counted from that attempt's answer, or a pause).
local function reacquire(keys, args)
  bind(keys)
  local now = clock(args[1])
  local worker, id, attempt = args[2], args[3], args[4]
  local v = redis.call('HGET', K.lease, id)
  if not owned(v, worker .. args[6]) then return -1 end
  local rest = string.sub(v, 3)
  local host = host_of_member(string.sub(v, MEMBER_AT))
  local h = host_get(host)
  if string.sub(v, 1, 1) == '1' then
    if args[5] ~= '1' then
      -- the previous attempt's end has not arrived: its answer came before this call, so a
      -- delayed host rests from now, as `ended` would have it; a resting host's slot is given
      -- back, and the retry asks again
      if h.delay > 0 then h.next = math.max(h.next, now + h.delay) end
      if h.next <= now then
        redis.call('HSET', K.lease, id, '1' .. attempt .. rest)
        return 0
      end
    end
    -- retake: a grant that did not start in time gives its slot back and asks again, so the
    -- host's spacing counts from now
    h.active = math.max(0, h.active - 1)
    hold(worker, host, -1)
    redis.call('HSET', K.lease, id, '0' .. string.sub(v, 2))
  end
  if h.active < h.limit and h.next <= now then
    start(h, now)
    hold(worker, host, 1)
    host_put(host, h)
    touch(host, h)
    redis.call('HSET', K.lease, id, '1' .. attempt .. rest)
    return 0
  end
  host_put(host, h)
  touch(host, h)
  if h.next > now then return h.next - now end
  return 100
end

-- Redis memory for items stays flat: an item every feed of the crawl has written (each feed's
-- checkpoint is past it) leaves the stream. A crawl with no feed keeps all of its items (the
-- stream is their only copy), and a feed checkpointed behind the others holds the rest.
local function trim_items()
  local floor = nil
  local all = redis.call('HGETALL', K.export)
  for j = 1, #all, 2 do
    if string.sub(all[j], 1, 1) ~= '@' then
      local last = tonumber(string.match(all[j + 1], '^(%d+),'))
      if floor == nil or last < floor then floor = last end
    end
  end
  if floor == nil or floor <= (tonumber(redis.call('HGET', K.export, '@trimmed')) or 0) then
    return
  end
  redis.call('XTRIM', K.items, 'MINID', (floor + 1) .. '-0')
  redis.call('HSET', K.export, '@trimmed', floor)
end

-- Commit outcomes with their items and children, each fenced by its lease, and the seeds,
-- stats deltas, spider state, feed checkpoints (then trim_items) and robots.txt records. ARGV:
-- now, worker, batch, then counted sections (see redis_codec.Batch.args). A batch already
-- applied (a reply lost to a connection drop) returns its first reply: nothing is applied twice.
local function commit(keys, args)
  bind(keys)
  local now = clock(args[1])
  local worker, batch = args[2], args[3]
  if gone() then return {false, 0, 0, 0} end
  local last = redis.call('HGET', K.commits, worker)
  if last then
    local seq, saved = string.match(last, '^(%d+):(.*)$')
    if seq == batch then return cjson.decode(saved) end
  end
  local i = 4
  local function take()
    i = i + 1
    return args[i - 1]
  end
  for _ = 1, tonumber(take()) do ended(worker, take(), now) end
  local reply = {'', 0, 0, 0}  -- state, refused, added, duplicates; then per outcome
  local names = {['2'] = 'done', ['3'] = 'failed', ['4'] = 'skipped'}
  for _ = 1, tonumber(take()) do
    local id, grant, state, count = take(), take(), take(), tonumber(take())
    local v = redis.call('HGET', K.lease, id)
    local ok = owned(v, worker .. grant)
    local first = -1
    if ok then
      drop_lease(id, v, false)
      redis.call('HDEL', K.req, id)
      redis.call('HINCRBY', K.counts, names[state] or 'done', 1)
      first = 0
    else
      reply[2] = reply[2] + 1
    end
    for _ = 1, count do
      local data = take()
      if ok then
        local item = redis.call('HINCRBY', K.meta, 'item_seq', 1)
        if first == 0 then first = item end
        redis.call('XADD', K.items, item .. '-0', 'r', id, 'd', data)
      end
    end
    if ok and count > 0 then redis.call('HINCRBY', K.counts, 'items', count) end
    for _ = 1, tonumber(take()) do
      local fp, host, prio, record = take(), take(), take(), take()
      if ok then add_child(fp, host, prio, record, reply) end
    end
    for _ = 1, tonumber(take()) do  -- the stats it counts, committed with it or not at all
      local field, delta = take(), take()
      if ok then redis.call('HINCRBY', K.stats, field, delta) end
    end
    reply[#reply + 1] = first
  end
  for _ = 1, tonumber(take()) do add_child(take(), take(), take(), take(), reply) end
  for _ = 1, tonumber(take()) do
    local kind, field, delta = take(), take(), take()
    if kind == 'f' then
      redis.call('HINCRBYFLOAT', K.stats, field, delta)
    else
      redis.call('HINCRBY', K.stats, field, delta)
    end
  end
  local feeds = 0
  for _, key in ipairs({K.meta, K.export, K.robots}) do
    local count = tonumber(take())
    if key == K.export then feeds = count end
    for _ = 1, count do redis.call('HSET', key, take(), take()) end
  end
  if feeds > 0 then trim_items() end
  redis.call('HINCRBY', K.counts, 'refused', reply[2])
  reply[1] = settle(now)
  redis.call('HSET', K.commits, worker, batch .. ':' .. cjson.encode(reply))
  return reply
end

-- Retry-After and the like: the host waits `ms` for every worker (ARGV: now, host, ms).
local function pause_host(keys, args)
  bind(keys)
  local now = clock(args[1])
  local host = args[2]
  if gone() then return -1 end
  local h = host_get(host)
  h.next = math.max(h.next, now + tonumber(args[3]))
  host_put(host, h)
  touch(host, h)
  return h.next - now
end

-- What robots.txt said (ARGV: now, host, concurrency, delay_ms, then site, robots record
-- pairs): the host's real limits, the largest delay any worker saw winning; the records are
-- stored first, so no worker gets a second slot on the host before the rules are there.
local function configure_host(keys, args)
  bind(keys)
  local host = args[2]
  if gone() then return -1 end
  local h = host_get(host)
  h.limit = tonumber(args[3])
  h.delay = math.max(tonumber(args[4]), h.known == 1 and h.delay or 0)
  h.known = 1
  host_put(host, h)
  touch(host, h)
  for i = 5, #args - 1, 2 do redis.call('HSET', K.robots, args[i], args[i + 1]) end
  return h.delay
end

-- A worker leaves (ARGV: now, worker): its leases are queued again at once.
local function leave(keys, args)
  bind(keys)
  local now = clock(args[1])
  local worker = args[2]
  local all = redis.call('HGETALL', K.lease)
  for j = 1, #all, 2 do
    if worker_of(all[j + 1]) == worker then drop_lease(all[j], all[j + 1], true) end
  end
  redis.call('ZREM', K.workers, worker)
  redis.call('ZREM', K.hungry, worker)
  if redis.call('HGET', K.export, '@owner') == worker then redis.call('HDEL', K.export, '@owner') end
  if redis.call('HGET', K.meta, 'seeder') == worker then
    redis.call('HSET', K.meta, 'seeder', '')
  end
  return settle(now)
end

-- The crawl's one feed exporter (ARGV: now, worker): 1 when this worker holds the role now
-- (nobody did, or its holder is gone), 0 when another live worker holds it; -1: the crawl is gone.
local function claim_export(keys, args)
  bind(keys)
  local now = clock(args[1])
  if gone() then return -1 end
  local owner = redis.call('HGET', K.export, '@owner')
  if owner ~= args[2] and alive(owner, now) then return 0 end
  redis.call('HSET', K.export, '@owner', args[2])
  return 1
end

local function stop(keys, args)
  bind(keys)
  local now = clock(args[1])
  reap(now)  -- dead workers' leases: with no live worker to reap them, the stop would never end
  if redis.call('HGET', K.meta, 'state') == 'running' then
    redis.call('HSET', K.meta, 'state', 'stopping')
  end
  return settle(now)
end

-- ARGV: now, field, value: one meta field (a run record, the spider state).
local function put(keys, args)
  bind(keys)
  if gone() then return 0 end
  redis.call('HSET', K.meta, args[2], args[3])
  return 1
end

-- The crawl as Redis has it, its wall time (ms from the first join to its last finish or
-- stop, or to now while it runs) and when it was created (a crawl deleted and created anew
-- under running workers is another one).
local function status(keys, args)
  bind(keys)
  local now = clock(args[1])
  local meta = redis.call('HMGET', K.meta, 'spider', 'state', 'item_seq', 'created_ms',
    'ended_ms')
  local created = tonumber(meta[4]) or now
  local ended = now
  if (meta[2] == 'finished' or meta[2] == 'stopped') and meta[5] then ended = tonumber(meta[5]) end
  return {meta[1] or '', meta[2] or '', redis.call('ZCARD', K.q), redis.call('HLEN', K.lease),
          redis.call('SCARD', K.seen), redis.call('ZCOUNT', K.workers, '(' .. now, '+inf'),
          tonumber(meta[3]) or 0, redis.call('HGETALL', K.counts),
          redis.call('HGETALL', K.stats), math.max(0, ended - created), meta[4] or ''}
end

local function version() return VERSION end

local function register(name, callback, readonly)
  local spec = {function_name = 'crawler_' .. name, callback = callback}
  if readonly then spec.flags = {'no-writes'} end
  redis.register_function(spec)
end

register('version', version, true)
register('status', status, true)
register('join', join)
register('heartbeat', heartbeat)
register('seeding_done', seeding_done)
register('lease', lease)
register('reacquire', reacquire)
register('commit', commit)
register('pause_host', pause_host)
register('configure_host', configure_host)
register('leave', leave)
register('stop', stop)
register('claim_export', claim_export)
register('put', put)
