"""The frontier: page jobs wait per host, and a worker only takes a job whose host may be fetched now.

Page jobs are enqueued on their RQ queue (goodreads, news, pages) as RQ does it, so every
RQ path (enqueue, the scheduler's retries, requeue from the dashboard) keeps working: the
RQ list is the frontier's *inbox*. The worker's dequeue (jobs/worker/claims.py, ClaimingQueue)
runs DISPATCH, one Lua script that, atomically:

1. pops the plain queues first (maintenance, callbacks: a few ms each, never per host);
2. drains the page inboxes into per-host *lanes*: one lane per batch (the job's meta
   "lane"), so two batches for one host take turns (round robin) and each keeps its
   order; the host joins FRONTIER_READY scored by when it may next be fetched;
3. gives out the next job of the host that has waited longest among the hosts whose time
   has come and that have a free concurrency slot: the job's lease on a slot is taken, the
   host's next start moved one delay on, and the job claimed exactly as a plain pop would
   (its claim names the lane, so a claim taken back returns the job to its lane's head).

When no host is ready the script answers how long until one is, and the worker waits that
long (capped by its poll), so a host's turn is taken within milliseconds and no worker
ever sleeps inside a job for a host's turn. While an origin's robots.txt is not cached,
its host gets one turn at a time, so robots.txt is fetched once, not by every job that
missed the cache at the same moment.

The job then holds a *turn* on its host (jobs/fetch/politeness.py): every request to that host
during the job (robots.txt, redirects on the same host) goes without waiting, each one
after the first pushing the host's next start one delay further, and FINISH_TURN, at the
end of the fetch, frees the slot and adapts the host's delay to how it answered.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import SplitResult

from redis import Redis
from redis.client import Pipeline

from guard import DEFAULT_PORTS
from keys import RQ_JOB_PREFIX, RQ_QUEUE_PREFIX
from storage import (
    FRONTIER_BACKLOG,
    FRONTIER_LANE,
    FRONTIER_LANES,
    FRONTIER_READY,
    host_delay_key,
    host_next_start_key,
    host_slots_key,
    robots_key,
)

DRAIN_PER_DISPATCH = 500  # inbox jobs moved into lanes per dispatch call (bounds one script's run)
HOSTS_PER_DISPATCH = 20  # ready hosts looked at per call before answering "nothing now"
DEAD_JOBS_PER_HOST = 10  # deleted jobs skipped at a lane's head per call
DELAY_MEMORY_MS = 3_600_000  # an adapted delay is forgotten after an hour without a turn

_LUA_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- host and robots.txt origin of a canonical URL, as urllib's urlsplit reads them
local function host_and_origin(url)
  local scheme, authority = string.match(url or '', '^(%a[%w+.-]*)://([^/?#]*)')
  if not scheme then return '', '' end
  scheme = string.lower(scheme)
  authority = string.gsub(authority, '^.*@', '')
  local host = string.match(authority, '^%[([^%]]*)%]') or string.gsub(authority, ':%d*$', '')
  host = string.lower(host)
  local port = tonumber(string.match(authority, ':(%d+)$')) or DEFAULT_PORTS[scheme] or 0
  local shown = string.find(host, ':', 1, true) and ('[' .. host .. ']') or host
  return host, scheme .. '://' .. shown .. ':' .. port
end
local function lane_of(meta)
  if not meta then return '' end
  local ok, decoded = pcall(cjson.decode, meta)
  if ok and type(decoded) == 'table' and type(decoded.lane) == 'string' and string.match(decoded.lane, '^[%w_-]*$') then
    return decoded.lane
  end
  return ''
end
local function lane_key(host, lane) return PREFIX_LANE .. host .. ' ' .. lane end
-- put a job id in its host's lane (at the head when given back), the lane in the host's turn
-- order and the host among the ready ones (now, or its next start)
local function file(host, lane, job_id, at_head, now)
  local key = lane_key(host, lane)
  if at_head then redis.call('LPUSH', key, job_id) else redis.call('RPUSH', key, job_id) end
  local lanes = PREFIX_LANES .. host
  if not redis.call('LPOS', lanes, lane) then
    if at_head then redis.call('LPUSH', lanes, lane) else redis.call('RPUSH', lanes, lane) end
  end
  redis.call('HINCRBY', PREFIX_BACKLOG, host, 1)
  if not redis.call('ZSCORE', PREFIX_READY, host) then
    local next_start = tonumber(redis.call('GET', PREFIX_NEXT .. host) or '0')
    redis.call('ZADD', PREFIX_READY, math.max(now, next_start), host)
  end
end
"""


def _lua(body: str) -> str:
    """A script with the key prefixes bound as PREFIX_* constants and guard.DEFAULT_PORTS as
    DEFAULT_PORTS (Lua has no imports: they are written in)."""
    names = {"PREFIX_LANE": FRONTIER_LANE, "PREFIX_LANES": FRONTIER_LANES, "PREFIX_BACKLOG": FRONTIER_BACKLOG,
             "PREFIX_READY": FRONTIER_READY, "PREFIX_NEXT": host_next_start_key(""), "PREFIX_SLOTS": host_slots_key(""),
             "PREFIX_DELAY": host_delay_key(""), "PREFIX_ROBOTS": robots_key(""), "PREFIX_JOB": RQ_JOB_PREFIX,
             "PREFIX_QUEUE": RQ_QUEUE_PREFIX}
    header = "".join(f"local {name} = '{value}'\n" for name, value in names.items())
    ports = ", ".join(f"{scheme} = {port}" for scheme, port in DEFAULT_PORTS.items())
    return header + f"local DEFAULT_PORTS = {{{ports}}}\n" + _LUA_COMMON + body


# KEYS[1] = claims zset, then the plain queue keys, then the page inboxes.
# ARGV: claim deadline (unix s), claim key prefix, number of plain queues, default delay ms,
# host concurrency, slot lease ms, robots.txt on (1/0), drain max, hosts per call, dead jobs per host.
# Answers {queue key, job id} for a job, or {false, ms until a host is ready (-1: none waits)}.
DISPATCH = _lua("""
local now = now_ms()
local claims, claim_prefix, plain = KEYS[1], ARGV[2], tonumber(ARGV[3])
local default_delay, limit, lease = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local robots_on, drain_max = ARGV[7] == '1', tonumber(ARGV[8])
local function claim(claim_value, job_id)
  redis.call('SET', claim_prefix .. job_id, claim_value)
  redis.call('ZADD', claims, ARGV[1], job_id)
end
for i = 2, 1 + plain do
  local job_id = redis.call('LPOP', KEYS[i])
  if job_id then
    claim(KEYS[i], job_id)
    return {KEYS[i], job_id}
  end
end
local drained = 0
for i = 2 + plain, #KEYS do
  while drained < drain_max do
    local job_id = redis.call('LPOP', KEYS[i])
    if not job_id then break end
    drained = drained + 1
    local fields = redis.call('HMGET', PREFIX_JOB .. job_id, 'description', 'meta')
    if fields[1] then  -- a deleted job is dropped, as RQ's own dequeue would skip it
      local host = host_and_origin(fields[1])
      if host == '' then
        -- no page URL, so no host to be polite to: not a page job (the worker refuses
        -- a job it did not write); given out at once, as a plain queue would
        claim(KEYS[i], job_id)
        return {KEYS[i], job_id}
      end
      file(host, lane_of(fields[2]), job_id, false, now)
    end
  end
end
local function drop_dead_heads(host, lanes)
  for _ = 1, tonumber(ARGV[10]) do
    local lane = redis.call('LINDEX', lanes, 0)
    if not lane then return nil end
    local key = lane_key(host, lane)
    local job_id = redis.call('LINDEX', key, 0)
    if not job_id then
      redis.call('LPOP', lanes)
    elseif redis.call('EXISTS', PREFIX_JOB .. job_id) == 1 then
      return lane, key, job_id
    else
      redis.call('LPOP', key)
      redis.call('HINCRBY', PREFIX_BACKLOG, host, -1)
    end
  end
  return nil
end
local function give_turn(host, lanes, lane, key, job_id)
  redis.call('LPOP', key)
  redis.call('LMOVE', lanes, lanes, 'LEFT', 'RIGHT')  -- round robin: this lane goes last
  if redis.call('LLEN', key) == 0 then redis.call('LREM', lanes, -1, lane) end
  if redis.call('HINCRBY', PREFIX_BACKLOG, host, -1) <= 0 then redis.call('HDEL', PREFIX_BACKLOG, host) end
  local slots = PREFIX_SLOTS .. host
  redis.call('ZADD', slots, now + lease, job_id)
  redis.call('PEXPIRE', slots, lease)
  local delay = tonumber(redis.call('GET', PREFIX_DELAY .. host) or default_delay)
  redis.call('SET', PREFIX_NEXT .. host, string.format('%d', now + delay), 'PX', string.format('%d', delay + 1000))
  if redis.call('EXISTS', lanes) == 1 then
    redis.call('ZADD', PREFIX_READY, now + delay, host)
  else
    redis.call('ZREM', PREFIX_READY, host)
  end
  claim(key, job_id)
  return {PREFIX_QUEUE .. (redis.call('HGET', PREFIX_JOB .. job_id, 'origin') or ''), job_id}
end
for _, host in ipairs(redis.call('ZRANGEBYSCORE', PREFIX_READY, '-inf', now, 'LIMIT', 0, tonumber(ARGV[9]))) do
  local lanes = PREFIX_LANES .. host
  local lane, key, job_id = drop_dead_heads(host, lanes)
  if not lane then
    if redis.call('EXISTS', lanes) == 0 then
      redis.call('ZREM', PREFIX_READY, host)
      redis.call('HDEL', PREFIX_BACKLOG, host)
    end
  else
    local slots = PREFIX_SLOTS .. host
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    local host_limit = limit
    if robots_on then
      local _, origin = host_and_origin(redis.call('HGET', PREFIX_JOB .. job_id, 'description'))
      if redis.call('EXISTS', PREFIX_ROBOTS .. origin) == 0 then host_limit = 1 end
    end
    local next_start = tonumber(redis.call('GET', PREFIX_NEXT .. host) or '0')
    if next_start > now then
      -- a request outside the frontier (a redirect from another host's page) took this start
      redis.call('ZADD', PREFIX_READY, next_start, host)
    elseif redis.call('ZCARD', slots) < host_limit then
      return give_turn(host, lanes, lane, key, job_id)
    else
      -- every slot taken: ready again when the first lease ends (a finished turn says so sooner)
      local first = redis.call('ZRANGE', slots, 0, 0, 'WITHSCORES')
      redis.call('ZADD', PREFIX_READY, tonumber(first[2]), host)
    end
  end
end
local first = redis.call('ZRANGE', PREFIX_READY, 0, 0, 'WITHSCORES')
if first[2] then return {false, math.max(0, tonumber(first[2]) - now)} end
return {false, -1}
""")

# A claim names the list its job was popped from: a plain queue, or a frontier lane. Taking
# the claim back puts a job that still waits for a run at the head of that list again.
# KEYS[1] = claims zset, KEYS[2] = the claim, KEYS[3] = the job's hash; ARGV[1] = job id.
# Answers 1 when the job went back to its lane, 0 when it no longer waits for a run.
TAKE_BACK = _lua("""
local lane_key_value = redis.call('GET', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
if not lane_key_value then return 0 end
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 0 end
if string.sub(lane_key_value, 1, #PREFIX_LANE) ~= PREFIX_LANE then
  if redis.call('LPOS', lane_key_value, ARGV[1]) then return 0 end
  redis.call('LPUSH', lane_key_value, ARGV[1])  -- a plain queue
  return 1
end
local host, lane = string.match(string.sub(lane_key_value, #PREFIX_LANE + 1), '^(.*) ([^ ]*)$')
if redis.call('LPOS', lane_key_value, ARGV[1]) then return 0 end
local now = now_ms()
file(host, lane, ARGV[1], true, now)
redis.call('ZADD', PREFIX_READY, 'LT', math.max(now, tonumber(redis.call('GET', PREFIX_NEXT .. host) or '0')), host)
return 1
""")

# KEYS: none (host-derived keys are built here). ARGV: host, lease token, outcome ("ok",
# "slow" or "error"), mean latency ms of the turn's requests, floor ms, cap ms, concurrency,
# default delay ms, ms since the turn began, Retry-After ms (0: none).
# Frees the slot, sets the host's adapted delay (AutoThrottle: halfway towards
# latency/concurrency, never under the floor; doubled, at least 1 s, on a slow-down
# answer; none at all while the floor is 0, spacing being off for the host), keeps the
# next start at least one delay after this turn began, and puts the host back among the
# ready ones. Answers the delay.
FINISH_TURN = _lua("""
local host = ARGV[1]
local now = now_ms()
redis.call('ZREM', PREFIX_SLOTS .. host, ARGV[2])
local floor, cap, concurrency = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local old = tonumber(redis.call('GET', PREFIX_DELAY .. host) or ARGV[8])
local delay
if floor <= 0 then
  delay = 0  -- spacing off for this host (its setting is 0 and robots.txt names no Crawl-delay)
elseif ARGV[3] == 'slow' then
  delay = math.max(old * 2, floor, tonumber(ARGV[10]), 1000)
elseif ARGV[3] == 'ok' then
  delay = math.max(floor, (old + tonumber(ARGV[4]) / concurrency) / 2)  -- towards latency / concurrency
else
  delay = math.max(old, floor)
end
delay = math.floor(math.min(delay, cap))
redis.call('SET', PREFIX_DELAY .. host, delay, 'PX', DELAY_MEMORY_MS)
local next_start = math.max(tonumber(redis.call('GET', PREFIX_NEXT .. host) or '0'), now - tonumber(ARGV[9]) + delay)
local keep_ms = math.max(1, next_start - now) + 1000
redis.call('SET', PREFIX_NEXT .. host, string.format('%d', next_start), 'PX', string.format('%d', keep_ms))
if redis.call('EXISTS', PREFIX_LANES .. host) == 1 then
  redis.call('ZADD', PREFIX_READY, math.max(now, next_start), host)
end
return delay
""".replace("DELAY_MEMORY_MS", str(DELAY_MEMORY_MS)))

# KEYS: none. ARGV: host, default delay ms. Reserves the host's next start from now without
# waiting for it (a turn's second request: a redirect, or the page after its robots.txt), so
# the host's next turn comes one delay later. Answers the new next start (ms).
BORROW_START = _lua("""
local host, now = ARGV[1], now_ms()
local delay = tonumber(redis.call('GET', PREFIX_DELAY .. host) or ARGV[2])
local next_start = math.max(now, tonumber(redis.call('GET', PREFIX_NEXT .. host) or '0')) + delay
local keep_ms = next_start - now + 1000
redis.call('SET', PREFIX_NEXT .. host, string.format('%d', next_start), 'PX', string.format('%d', keep_ms))
if redis.call('ZSCORE', PREFIX_READY, host) then
  redis.call('ZADD', PREFIX_READY, 'GT', next_start, host)
end
return next_start
""")


# KEYS: none. ARGV: job id. A turn its job will not use (refused, or saved by an earlier
# run): its slot is freed now rather than when its lease ends, and the host is ready again
# at its next start. Answers 1 when the job held a slot, 0 when it held none (already ended).
GIVE_BACK = _lua("""
local host = host_and_origin(redis.call('HGET', PREFIX_JOB .. ARGV[1], 'description'))
if redis.call('ZREM', PREFIX_SLOTS .. host, ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', PREFIX_LANES .. host) == 1 then
  local now = now_ms()
  redis.call('ZADD', PREFIX_READY, math.max(now, tonumber(redis.call('GET', PREFIX_NEXT .. host) or '0')), host)
end
return 1
""")


# KEYS: none. ARGV: job id. A job that will not run (canceled) leaves its host's lane, so the
# host's backlog counts only jobs that will; DISPATCH would otherwise give it a turn (it skips
# only deleted jobs). Queued on a caller's MULTI, after the job's own removal from its inbox:
# either the job is still there or it is in its lane, never between. Answers 1 when removed.
FORGET = _lua("""
local fields = redis.call('HMGET', PREFIX_JOB .. ARGV[1], 'description', 'meta')
local host = host_and_origin(fields[1])
if host == '' then return 0 end
local lane = lane_of(fields[2])
local key = lane_key(host, lane)
if redis.call('LREM', key, 0, ARGV[1]) == 0 then return 0 end
if redis.call('LLEN', key) == 0 then redis.call('LREM', PREFIX_LANES .. host, 0, lane) end
if redis.call('HINCRBY', PREFIX_BACKLOG, host, -1) <= 0 then redis.call('HDEL', PREFIX_BACKLOG, host) end
return 1
""")


def forget(connection: Redis, pipe: Pipeline, job_id: str) -> None:
    """Queue FORGET of job_id on pipe (a MULTI of the caller's)."""
    connection.register_script(FORGET)(args=[job_id], client=pipe)


def give_back(connection: Redis, job_id: str) -> bool:
    """Free the host turn a job holds and will not use (GIVE_BACK); False when it held none."""
    return bool(connection.register_script(GIVE_BACK)(args=[job_id], client=connection))


def host_of(parts: SplitResult) -> str:
    """The host a page job waits for and takes turns on: its URL's host name, lower case (what
    the scripts' host_and_origin reads; politeness and the API's waiting views key it the same)."""
    return (parts.hostname or "").lower()


@dataclass(frozen=True)
class DispatchPolicy:
    """What DISPATCH needs from the settings, fixed per worker pool."""

    default_delay_ms: int
    concurrency: int
    lease_ms: int
    robots_txt: bool


def dispatch(connection: Redis, policy: DispatchPolicy, claims_key: str, claim_prefix: str, claim_deadline: float,
             plain_keys: list[str], inbox_keys: list[str]) -> tuple[str | None, str | float]:
    """(queue key, job id) of the job to run now, else (None, seconds until a host is ready, -1: none)."""
    script = connection.register_script(DISPATCH)
    args = [claim_deadline, claim_prefix, len(plain_keys), policy.default_delay_ms, policy.concurrency,
            policy.lease_ms, int(policy.robots_txt), DRAIN_PER_DISPATCH, HOSTS_PER_DISPATCH, DEAD_JOBS_PER_HOST]
    first, second = script(keys=[claims_key, *plain_keys, *inbox_keys], args=args, client=connection)
    if first:
        return first.decode(), second.decode()
    return None, (second / 1000 if second >= 0 else -1.0)


@dataclass(frozen=True)
class HostSchedule:
    """What GET /jobs, /info and /batches say about a host's queue of page jobs."""

    host: str
    backlog: int  # jobs waiting in its lanes
    lanes: int  # batches taking turns on it
    delay: float  # seconds between its request starts, as adapted
    next_slot_at: datetime | None  # when it may be given its next turn (None: no job waits)

    def clear_at(self, jobs: int | None = None, concurrency: int = 1) -> datetime | None:
        """When the last of `jobs` (default: all its backlog) of this host is started, by
        its delay. Round robin: a batch's k jobs start within k turns of each lane."""
        if self.next_slot_at is None:
            return None
        turns = self.backlog if jobs is None else min(self.backlog, jobs * max(1, self.lanes))
        return datetime.fromtimestamp(self.next_slot_at.timestamp() + max(0, turns - 1) * self.delay, timezone.utc)

    def as_json(self) -> dict:
        return {"host": self.host, "backlog": self.backlog, "batches": self.lanes, "delay_seconds": self.delay,
                "next_slot_at": self.next_slot_at.isoformat() if self.next_slot_at else None}


SCHEDULE_READS = 4  # replies read_schedule() adds to a pipeline


def read_schedule(pipe: Pipeline, host: str) -> None:
    """Queue on pipe the SCHEDULE_READS commands schedule_from() turns into a host's schedule."""
    pipe.hget(FRONTIER_BACKLOG, host).llen(FRONTIER_LANES + host).get(host_delay_key(host))
    pipe.zscore(FRONTIER_READY, host)


def schedule_from(host: str, replies: list, default_delay: float) -> HostSchedule:
    backlog, lanes, delay_ms, ready_ms = replies
    return HostSchedule(host, int(backlog or 0), int(lanes or 0), int(delay_ms) / 1000 if delay_ms else default_delay,
                        datetime.fromtimestamp(ready_ms / 1000, timezone.utc) if ready_ms is not None else None)


def host_schedules(connection: Redis, hosts: list[str], default_delay: float) -> dict[str, HostSchedule]:
    """Each host's schedule, in one round trip."""
    with connection.pipeline(transaction=False) as pipe:
        for host in hosts:
            read_schedule(pipe, host)
        replies = pipe.execute()
    return {host: schedule_from(host, replies[index * SCHEDULE_READS: (index + 1) * SCHEDULE_READS], default_delay)
            for index, host in enumerate(hosts)}


def backlog_summary(connection: Redis, limit: int) -> tuple[int, int, list[tuple[str, int]]]:
    """(jobs waiting in all lanes, hosts they wait for, the `limit` hosts with most waiting, most first)."""
    counts = [(host.decode(), int(count)) for host, count in connection.hgetall(FRONTIER_BACKLOG).items()
              if int(count) > 0]
    return sum(count for _, count in counts), len(counts), sorted(counts, key=lambda item: -item[1])[:limit]
