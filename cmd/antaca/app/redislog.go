package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisLogger routes go-redis's own messages (dial failures while Redis is
// down, which come once per pooled connection) to the app's logger, at most
// once a second so an outage does not flood the logs.
type redisLogger struct {
	log  *slog.Logger
	mu   sync.Mutex
	last time.Time
}

func (l *redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < time.Second {
		l.mu.Unlock()
		return
	}
	l.last = now
	l.mu.Unlock()
	l.log.Warn("redis client", "msg", fmt.Sprintf(format, v...))
}

var setRedisLogger sync.Once

// useRedisLogger installs the logger; go-redis has one process-wide.
func useRedisLogger(log *slog.Logger) {
	setRedisLogger.Do(func() { redis.SetLogger(&redisLogger{log: log}) })
}
