package app_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/cmd/antaca/app"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/ledgertest"
	"github.com/antaca/antaca/ledger/pgstore"
)

// startRedisCluster runs a three-master Redis Cluster of the test's own on
// free ports and returns its seed URL for ANTACA_REDIS_URL.
func startRedisCluster(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skip(bin + " not installed")
		}
	}
	var addrs []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		dir := t.TempDir()
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--save", "", "--appendonly", "no", "--dir", dir)
		must(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	for _, a := range addrs {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		for i := 0; rdb.Ping(context.Background()).Err() != nil && i < 100; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		_ = rdb.Close()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("creating the cluster: %v\n%s", err, out)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addrs[0]})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := rdb.ClusterInfo(context.Background()).Result()
		if strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ready: %s", info)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
}

// TestOnRedisCluster runs the switch on a three-master Redis Cluster:
// several partners land on different shards, every script stays in its
// partner's slot, the write-behind drains every shard's journals, and
// the audit is clean.
func TestOnRedisCluster(t *testing.T) {
	url := startRedisCluster(t)
	h := startApp(t, func(c *app.Config) {
		c.RedisURL = url
		c.RedisCluster = true
	})
	ctx := context.Background()
	c := h.client("cmf")
	var programs []*program
	for range 4 {
		p := h.newProgram(ledger.FundingDeposit, 100_000, 10_000)
		card := p.virtualCard(p.balance)
		auth := h.send(c, txn{MTI: "0100", PAN: card.PAN, Amount: 700})
		if got := field(t, auth.Resp, 39); got != "0000" {
			t.Fatalf("auth on the cluster: %s", got)
		}
		if got := field(t, h.send(c, txn{MTI: "0200", PAN: card.PAN, Amount: 300}).Resp, 39); got != "0000" {
			t.Fatalf("0200 on the cluster: %s", got)
		}
		rev := h.send(c, txn{MTI: "0400", PAN: card.PAN, Amount: 700, RRN: auth.RRN, Original: auth})
		if got := field(t, rev.Resp, 39); got != "4000" {
			t.Fatalf("reversal on the cluster: %s", got)
		}
		if u := p.user(p.balance); u.Available != 9_700 || u.Held != 0 || u.Posted != 300 {
			t.Fatalf("balance on the cluster: %+v", u)
		}
		p.checkMoney()
		programs = append(programs, p)
	}
	// The partners' keys are spread over the shards.
	cc := h.App.Redis.(*redis.ClusterClient)
	shards := map[string]bool{}
	for _, p := range programs {
		slot, err := cc.ClusterKeySlot(ctx, h.App.Ledger.Keys().Tag(p.partner)).Result()
		must(t, err)
		nodes, err := cc.ClusterShards(ctx).Result()
		must(t, err)
		for _, s := range nodes {
			for _, r := range s.Slots {
				if slot >= r.Start && slot <= r.End {
					shards[s.Nodes[0].ID] = true
				}
			}
		}
	}
	if len(shards) < 2 {
		t.Logf("all %d partners landed on one shard; the test still ran every script on the cluster", len(programs))
	}
	fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	must(t, h.App.FlushJournal(fctx))
	rep, err := pgstore.Audit(ctx, h.App.Redis, h.App.Ledger.Keys(), h.App.Pool)
	must(t, err)
	if !rep.OK() {
		t.Fatalf("audit on the cluster:\n%s", rep)
	}
	for _, p := range programs {
		ids, err := h.App.Ledger.PartnerBalanceIDs(ctx, p.partner)
		must(t, err)
		if len(ids) != 1 || ids[0] != p.pbal {
			t.Fatalf("partner balances found on the cluster: %v, want [%s]", ids, p.pbal)
		}
	}

	// Lose the cluster's state (every master), restart: rebuilt from
	// Postgres, same balances, clean audit.
	before := programs[0].user(programs[0].balance)
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	must(t, h.App.Shutdown(sctx))
	rdb, err := redis.ParseClusterURL(url)
	must(t, err)
	cc2 := redis.NewClusterClient(rdb)
	defer cc2.Close()
	ledgertest.DeleteKeys(t, ctx, cc2, h.Config.KeyPrefix+":*")
	h2 := startWith(t, h.Config)
	for _, p := range programs {
		p.h = h2
	}
	if after := programs[0].user(programs[0].balance); after != before {
		t.Fatalf("after rebuild on the cluster %+v, before %+v", after, before)
	}
	rep, err = pgstore.Audit(ctx, h2.App.Redis, h2.App.Ledger.Keys(), h2.App.Pool)
	must(t, err)
	if !rep.OK() {
		t.Fatalf("audit after rebuild on the cluster:\n%s", rep)
	}
}
