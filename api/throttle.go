package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Login throttling slows password guessing without locking anyone out.
//
// A failed login is counted three times: for the pair (username, client
// address), for the client address (any username), and for the username
// (any address). Each count allows a few failures at full speed; after
// that, the next attempt must wait a delay that doubles with every further
// failure (LoginBaseDelay, 2x, 4x ... up to LoginMaxDelay), counted from
// the last failure. An attempt made too early answers 429
// TOO_MANY_ATTEMPTS with Retry-After, whatever the password, and is not
// counted. A count is forgotten LoginWindow after its last failure.
//
// The username count applies only to addresses that are not known for the
// username: an address becomes known by a successful login as that user
// and stays known for knownAddressTTL. So an attacker who knows an admin's
// name slows down only their own address (pair and address counts) and
// unknown addresses (the username count, against guessing spread over
// many addresses); the admin, logging in from an address they used
// before, is never kept out. A successful login clears the count of its
// pair only: the address and username counts decay with time, so that one
// valid account does not refill an attacker's budget.

// knownAddressTTL is how long a successful login exempts its address from
// the username count.
const knownAddressTTL = 30 * 24 * time.Hour

// loginCount is one failure count: n failures, the last at last.
type loginCount struct {
	n    int
	last time.Time
}

// recordFailure counts one failure in a hash {n, last}: a count whose last
// failure is older than the window starts again from 1. One key per call,
// so it runs on Redis Cluster whatever the keys' slots.
var recordFailure = redis.NewScript(`
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
if now - last >= window then redis.call('HSET', KEYS[1], 'n', 0) end
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('PEXPIRE', KEYS[1], window)
return 1`)

// loginKeys are the Redis keys of one login attempt.
type loginKeys struct {
	pair, addr, user, known string
}

func (s *Server) loginKeys(username, ip string) loginKeys {
	u := hashToken(username) // usernames are not secrets, but keep them out of key listings
	return loginKeys{
		pair:  s.keys.prefix + ":login:pair:" + u + ":" + ip,
		addr:  s.keys.prefix + ":login:ip:" + ip,
		user:  s.keys.prefix + ":login:user:" + u,
		known: s.keys.prefix + ":login:known:" + u + ":" + ip,
	}
}

// loginDelay is the wait a count imposes after its last failure.
func (s *Server) loginDelay(n, free int) time.Duration {
	if n < free {
		return 0
	}
	steps := n - free
	if steps >= 32 {
		return s.cfg.LoginMaxDelay
	}
	d := s.cfg.LoginBaseDelay << steps
	if d <= 0 || d > s.cfg.LoginMaxDelay {
		return s.cfg.LoginMaxDelay
	}
	return d
}

// loginWait returns how long this attempt must still wait (0: go ahead).
func (s *Server) loginWait(ctx context.Context, k loginKeys) (time.Duration, error) {
	// A pipeline rather than one script: the keys may sit in different
	// Redis Cluster slots.
	pipe := s.cfg.Redis.Pipeline()
	pair, addr, user := pipe.HGetAll(ctx, k.pair), pipe.HGetAll(ctx, k.addr), pipe.HGetAll(ctx, k.user)
	known := pipe.Exists(ctx, k.known)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("reading login attempts: %w", err)
	}
	now := s.now()
	wait := func(cmd *redis.MapStringStringCmd, free int) time.Duration {
		c := parseLoginCount(cmd.Val())
		if c.n == 0 || now.Sub(c.last) >= s.cfg.LoginWindow {
			return 0
		}
		return c.last.Add(s.loginDelay(c.n, free)).Sub(now)
	}
	w := max(wait(pair, s.cfg.LoginFreeFailures), wait(addr, s.cfg.LoginFreeFailuresPerIP))
	if known.Val() == 0 {
		w = max(w, wait(user, s.cfg.LoginFreeFailuresPerUser))
	}
	return max(w, 0), nil
}

func parseLoginCount(m map[string]string) loginCount {
	n, _ := strconv.Atoi(m["n"])
	ms, _ := strconv.ParseInt(m["last"], 10, 64)
	return loginCount{n: n, last: time.UnixMilli(ms)}
}

// loginFailed counts a failure for the pair, the address and the username.
func (s *Server) loginFailed(ctx context.Context, k loginKeys) error {
	now, window := strconv.FormatInt(s.now().UnixMilli(), 10), strconv.FormatInt(s.cfg.LoginWindow.Milliseconds(), 10)
	pipe := s.cfg.Redis.Pipeline()
	for _, key := range []string{k.pair, k.addr, k.user} {
		recordFailure.Eval(ctx, pipe, []string{key}, now, window)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("counting login failure: %w", err)
	}
	return nil
}

// loginSucceeded clears the pair's count and makes the address known for
// the username.
func (s *Server) loginSucceeded(ctx context.Context, k loginKeys) error {
	pipe := s.cfg.Redis.Pipeline()
	pipe.Del(ctx, k.pair)
	pipe.Set(ctx, k.known, "1", knownAddressTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("recording login: %w", err)
	}
	return nil
}
