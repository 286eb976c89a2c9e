package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// clockTicks is the kernel's clock tick (`getconf CLK_TCK`), the unit of
// utime and stime in /proc/<pid>/stat; 100 when getconf is missing.
func clockTicks(ctx context.Context) int64 {
	out, err := exec.CommandContext(ctx, "getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

// procCPU returns utime+stime of a process in clock ticks and its command
// name, from /proc/<pid>/stat.
func procCPU(pid int) (ticks int64, comm string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", err
	}
	s := string(b)
	// The command name is in parentheses and may hold spaces; the fields
	// after the last ')' start with the state (field 3). utime and stime
	// are fields 14 and 15.
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return 0, "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	comm = s[open+1 : closing]
	f := strings.Fields(s[closing+1:])
	if len(f) < 13 {
		return 0, "", fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, "", fmt.Errorf("/proc/%d/stat: unreadable utime/stime", pid)
	}
	return ut + st, comm, nil
}

// cpuSnapshot is the CPU time of the processes of one role (ticks by pid).
type cpuSnapshot map[int]int64

// cpuDelta is the CPU the processes spent between two snapshots: pids in
// both count their difference, pids only in the second count whole (they
// started in between); pids that ended in between are lost to /proc.
func cpuDelta(before, after cpuSnapshot) int64 {
	var d int64
	for pid, t := range after {
		d += t - before[pid]
	}
	return d
}

func snapshot(pids []int, wantComm string) cpuSnapshot {
	s := cpuSnapshot{}
	for _, pid := range pids {
		t, comm, err := procCPU(pid)
		if err != nil || (wantComm != "" && !strings.HasPrefix(comm, wantComm)) {
			continue
		}
		s[pid] = t
	}
	return s
}

var processIDPattern = regexp.MustCompile(`process_id:(\d+)`)

// redisPID is the Redis server's pid (INFO server), when /proc shows it as
// redis-server on this machine (a Redis in a container or elsewhere is not
// measured).
func redisPID(ctx context.Context, rdb redis.UniversalClient) (int, error) {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	m := processIDPattern.FindStringSubmatch(info)
	if m == nil {
		return 0, fmt.Errorf("INFO server has no process_id")
	}
	pid, _ := strconv.Atoi(m[1])
	if _, comm, err := procCPU(pid); err != nil || !strings.HasPrefix(comm, "redis") {
		return 0, fmt.Errorf("redis process %d is not visible in /proc on this machine", pid)
	}
	return pid, nil
}

// postgresPIDs are the Postgres processes that work for the bench's
// database: its client backends, and every process that is not a client
// backend (WAL writer, background writer, checkpointer, autovacuum). Client
// backends of other databases — other users of a shared server — are
// left out.
func postgresPIDs(ctx context.Context, dbURL string) ([]int, error) {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE (datname = current_database() OR backend_type <> 'client backend') AND pid <> pg_backend_pid()`)
	if err != nil {
		return nil, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	out := make([]int, len(pids))
	for i, p := range pids {
		out[i] = int(p)
	}
	return out, nil
}

// cpuMeter measures CPU per role over a window: the bench process (the
// switch), Redis, Postgres; the generator, a child process, is measured
// by the caller from its exit status.
type cpuMeter struct {
	tick     int64
	redisPID int
	dbURL    string
	start    time.Time
	self     int64
	redis    cpuSnapshot
	postgres cpuSnapshot
	pgPIDs   []int
	notes    []string
}

func startCPUMeter(ctx context.Context, rdb redis.UniversalClient, dbURL string) *cpuMeter {
	m := &cpuMeter{tick: clockTicks(ctx), dbURL: dbURL}
	var err error
	if m.redisPID, err = redisPID(ctx, rdb); err != nil {
		m.notes = append(m.notes, "redis: "+err.Error())
	}
	if m.pgPIDs, err = postgresPIDs(ctx, dbURL); err != nil {
		m.notes = append(m.notes, "postgres: "+err.Error())
	}
	m.start = time.Now()
	m.self, _, _ = procCPU(os.Getpid())
	if m.redisPID > 0 {
		m.redis = snapshot([]int{m.redisPID}, "redis")
	}
	m.postgres = snapshot(m.pgPIDs, "postgres")
	return m
}

// stop returns the CPU microseconds spent since start by the switch (this
// process), Redis (-1 when not measurable) and Postgres.
func (m *cpuMeter) stop(ctx context.Context) (switchUS, redisUS, postgresUS int64, wall time.Duration) {
	wall = time.Since(m.start)
	self, _, _ := procCPU(os.Getpid())
	us := func(ticks int64) int64 { return ticks * 1_000_000 / m.tick }
	switchUS = us(self - m.self)
	redisUS = -1
	if m.redisPID > 0 {
		redisUS = us(cpuDelta(m.redis, snapshot([]int{m.redisPID}, "redis")))
	}
	// Backends that appeared during the window (new pool connections)
	// count too.
	pids := m.pgPIDs
	if later, err := postgresPIDs(ctx, m.dbURL); err == nil {
		pids = append(pids, later...)
	}
	postgresUS = us(cpuDelta(m.postgres, snapshot(pids, "postgres")))
	return switchUS, redisUS, postgresUS, wall
}
