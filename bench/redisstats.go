package bench

import (
	"bufio"
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// cmdStat is one line of INFO commandstats.
type cmdStat struct{ calls, usec int64 }

// commandStats reads INFO commandstats: command -> calls and usec.
func commandStats(ctx context.Context, rdb redis.UniversalClient) (map[string]cmdStat, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]cmdStat{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var s cmdStat
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				s.calls, _ = strconv.ParseInt(v, 10, 64)
			case "usec":
				s.usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = s
	}
	return out, nil
}

// CommandStats is what Redis counted while the closed loop ran (INFO
// commandstats, after minus before). Redis counts the commands a script
// runs under their own names as well as the script's EVALSHA, and counts
// EVALSHA as one line whatever the script: the time of each script is
// measured alone with redis-benchmark (RedisScripts).
type CommandStats struct {
	// EvalshaCalls and EvalshaUSPerCall are the scripts, all together.
	EvalshaCalls     int64   `json:"evalsha_calls"`
	EvalshaUSPerCall float64 `json:"evalsha_usec_per_call"`
	// EvalshaPerApproval and CommandsPerApproval divide by the closed
	// loop's approvals; CommandsPerApproval counts every other command
	// (those inside the scripts, and the write-behind's XDEL, XLEN, ...).
	EvalshaPerApproval  float64 `json:"evalsha_per_approval"`
	CommandsPerApproval float64 `json:"commands_per_approval"`
	// Commands lists the busiest commands: calls and usec_per_call.
	Commands []CommandCount `json:"commands"`
	// Scripts are the EVALSHA calls the switch sent, by script, counted
	// by a hook on the switch's Redis client (per approval).
	Scripts map[string]float64 `json:"scripts_per_approval,omitempty"`
}

// CommandCount is one command's share.
type CommandCount struct {
	Name        string  `json:"name"`
	Calls       int64   `json:"calls"`
	USPerCall   float64 `json:"usec_per_call"`
	PerApproval float64 `json:"per_approval"`
}

// diffCommandStats turns two INFO commandstats readings into CommandStats.
func diffCommandStats(before, after map[string]cmdStat, approvals int64) *CommandStats {
	cs := &CommandStats{}
	var others int64
	for name, a := range after {
		b := before[name]
		calls, usec := a.calls-b.calls, a.usec-b.usec
		if calls <= 0 {
			continue
		}
		switch name {
		case "info", "ping", "time", "client|setinfo", "hello", "script|load":
			continue // ours, or connection set-up
		case "evalsha":
			cs.EvalshaCalls = calls
			cs.EvalshaUSPerCall = float64(usec) / float64(calls)
		default:
			others += calls
		}
		cc := CommandCount{Name: name, Calls: calls, USPerCall: float64(usec) / float64(calls)}
		if approvals > 0 {
			cc.PerApproval = float64(calls) / float64(approvals)
		}
		cs.Commands = append(cs.Commands, cc)
	}
	sort.Slice(cs.Commands, func(i, j int) bool { return cs.Commands[i].Calls > cs.Commands[j].Calls })
	if len(cs.Commands) > 15 {
		cs.Commands = cs.Commands[:15]
	}
	if approvals > 0 {
		cs.EvalshaPerApproval = float64(cs.EvalshaCalls) / float64(approvals)
		cs.CommandsPerApproval = float64(others) / float64(approvals)
	}
	return cs
}

// shaCounter is a go-redis hook counting EVALSHA calls by script SHA,
// alone or in (auto-)pipelines.
type shaCounter struct {
	mu sync.Mutex
	n  map[string]int64
}

var _ redis.Hook = (*shaCounter)(nil)

func newSHACounter() *shaCounter { return &shaCounter{n: map[string]int64{}} }

func (c *shaCounter) count(cmd redis.Cmder) {
	if args := cmd.Args(); len(args) > 1 && strings.EqualFold(cmd.Name(), "evalsha") {
		if sha, ok := args[1].(string); ok {
			c.mu.Lock()
			c.n[sha]++
			c.mu.Unlock()
		}
	}
}

func (c *shaCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *shaCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *shaCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

// take returns the counts so far and starts again.
func (c *shaCounter) take() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int64{}
	return n
}
