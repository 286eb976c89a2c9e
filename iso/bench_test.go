package iso_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/iso"
	"github.com/antaca/antaca/iso/isoclient"
)

// typical0100 returns a typical authorization request, packed.
func typical0100(b *testing.B, p *iso.Profile) []byte {
	b.Helper()
	return pack(b, txn{mti: "0100", stan: "000001"}.build(b, p))
}

func typical0110(b *testing.B, p *iso.Profile) *iso8583.Message {
	b.Helper()
	req := iso8583.NewMessage(p.Spec)
	if err := req.Unpack(typical0100(b, p)); err != nil {
		b.Fatal(err)
	}
	resp, err := iso.BuildResponse(p, req, approve())
	if err != nil {
		b.Fatal(err)
	}
	return resp
}

// BenchmarkUnpack: a typical 0100 as the server receives it, and a 0110
// as a client receives it.
func BenchmarkUnpack(b *testing.B) {
	p := mustProfile(b, iso.ProfileCMF)
	inputs := map[string][]byte{"0100": typical0100(b, p), "0110": pack(b, typical0110(b, p))}
	for _, mti := range []string{"0100", "0110"} {
		raw := inputs[mti]
		b.Run(mti, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				m := iso8583.NewMessage(p.Spec)
				if err := m.Unpack(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPack: a typical 0100 as a client sends it, and the 0110 the
// server builds (BuildResponse included) and sends.
func BenchmarkPack(b *testing.B) {
	p := mustProfile(b, iso.ProfileCMF)
	b.Run("0100", func(b *testing.B) {
		m := txn{mti: "0100", stan: "000001"}.build(b, p)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.Pack(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("0110", func(b *testing.B) {
		req := iso8583.NewMessage(p.Spec)
		if err := req.Unpack(typical0100(b, p)); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			resp, err := iso.BuildResponse(p, req, approve())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := resp.Pack(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkServerRoundTrip measures 0100 -> 0110 over loopback TCP through
// the whole server (framing, unpack, mapping, deadline goroutine, build,
// pack, write) and the isoclient, with an Authorizer that answers at once.
// It reports throughput and latency percentiles; client and server share
// the machine, so the figures are a floor for the server alone.
func BenchmarkServerRoundTrip(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			auth := &fakeAuthorizer{authorize: func(context.Context, *authz.Request) authz.Decision { return approve() }}
			ts := startServer(b, iso.Config{Logger: discardLogger()}, auth)
			clients := make([]*isoclient.Client, conns)
			for i := range clients {
				clients[i] = ts.dial(b)
			}
			// 32 requests in flight in total, spread over the connections.
			workersPerConn := 32 / conns
			template := txn{mti: "0100"}

			var next sync.Mutex
			remaining := b.N
			take := func() bool {
				next.Lock()
				defer next.Unlock()
				if remaining == 0 {
					return false
				}
				remaining--
				return true
			}
			lat := make([][]time.Duration, conns*workersPerConn)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range conns * workersPerConn {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := clients[w%conns]
					for take() {
						msg, err := template.tryBuild(ts.profile)
						if err != nil {
							b.Error(err)
							return
						}
						t0 := time.Now()
						resp, err := c.Send(context.Background(), msg)
						if err != nil {
							b.Error(err)
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
						if code, _ := resp.GetString(39); code != "0000" {
							b.Errorf("DE39 %q", code)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()

			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) == 0 {
				return
			}
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
		})
	}
}
