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
// partners land on at least two shards, every script stays in its
// partner's slot, the write-behind drains every shard's journals, and
// the audit is clean, before and after a rebuild from Postgres.
func TestOnRedisCluster(t *testing.T) {
	url := startRedisCluster(t)
	h := startApp(t, func(c *app.Config) {
		c.RedisURL = url
		c.RedisCluster = true
	})
	ctx := context.Background()
	c := h.client("cmf")
	cc := h.App.Redis.(*redis.ClusterClient)
	topology, err := cc.ClusterShards(ctx).Result()
	must(t, err)
	// shardOf names the master serving the partner's hash slot.
	shardOf := func(partner string) string {
		t.Helper()
		slot, err := cc.ClusterKeySlot(ctx, h.App.Ledger.Keys().Tag(partner)).Result()
		must(t, err)
		for _, s := range topology {
			for _, r := range s.Slots {
				if slot >= r.Start && slot <= r.End {
					for _, n := range s.Nodes {
						if n.Role == "master" {
							return n.ID
						}
					}
					return s.Nodes[0].ID
				}
			}
		}
		t.Fatalf("no shard serves slot %d of partner %s", slot, partner)
		return ""
	}
	// Partners get random ids: create programs until they cover at least
	// two shards (at least four programs, at most 20; with three masters
	// twenty on one shard has odds of about 3^-19).
	var programs []*program
	shards := map[string]int{}
	for len(programs) < 4 || len(shards) < 2 {
		if len(programs) == 20 {
			t.Fatalf("all %d partners landed on one shard: %v", len(programs), shards)
		}
		p := h.newProgram(ledger.FundingDeposit, 100_000, 10_000)
		shards[shardOf(p.partner)]++
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
	t.Logf("%d partners on %d shards: %v", len(programs), len(shards), shards)
	h.audit("on the cluster")
	for _, p := range programs {
		ids, err := h.App.Ledger.PartnerBalanceIDs(ctx, p.partner)
		must(t, err)
		if len(ids) != 1 || ids[0] != p.pbal {
			t.Fatalf("partner balances found on the cluster: %v, want [%s]", ids, p.pbal)
		}
	}

	// Lose the cluster's state (every master), restart: rebuilt from
	// Postgres once, same balances, money conserved, clean audit.
	users := make([]ledger.UserBalance, len(programs))
	deposits := make([]ledger.PartnerBalance, len(programs))
	for i, p := range programs {
		users[i], deposits[i] = p.user(p.balance), p.deposit()
	}
	h.shutdown(t)
	rdb, err := redis.ParseClusterURL(url)
	must(t, err)
	cc2 := redis.NewClusterClient(rdb)
	defer cc2.Close()
	ledgertest.DeleteKeys(t, ctx, cc2, h.Config.KeyPrefix+":*")
	h2 := startWith(t, h.Config)
	if n := h2.App.Rebuilds(); n != 1 {
		t.Fatalf("the restarted switch rebuilt the cluster %d times, want 1", n)
	}
	for i, p := range programs {
		p.h = h2
		if after := p.user(p.balance); after != users[i] {
			t.Fatalf("program %d: user balance after rebuild on the cluster %+v, before %+v", i, after, users[i])
		}
		if d := p.deposit(); d != deposits[i] {
			t.Fatalf("program %d: deposit after rebuild on the cluster %+v, before %+v", i, d, deposits[i])
		}
		p.checkMoney()
	}
	h2.audit("after rebuild on the cluster")
}
