// Command webhook-receiver is an example receiver of Antaca's webhooks: it
// verifies every delivery's Antaca-Signature with the endpoint secret,
// drops repeats by event id, and prints each event.
//
//	WEBHOOK_SECRET=whsec_... go run ./docs/webhook-receiver -addr :8443 -cert cert.pem -key key.pem
//
// Register its https URL with POST /secure/webhooks (api/README.md,
// "Webhooks"); the secret is in that answer.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"

	"github.com/antaca/antaca/simulator/webhook"
)

func main() {
	addr := flag.String("addr", ":8443", "listen address")
	cert := flag.String("cert", "", "TLS certificate (Antaca sends only to https URLs)")
	key := flag.String("key", "", "TLS key")
	flag.Parse()
	secret := os.Getenv("WEBHOOK_SECRET")
	if secret == "" {
		log.Fatal("WEBHOOK_SECRET is required")
	}
	var mu sync.Mutex
	seen := map[string]bool{} // a real receiver keeps this in its database
	rc := &webhook.Receiver{
		Secret: func() string { return secret },
		Handle: func(ev webhook.Event, raw []byte) error {
			mu.Lock()
			defer mu.Unlock()
			if seen[ev.ID] {
				return nil // delivered again (at least once): already handled
			}
			seen[ev.ID] = true
			fmt.Printf("%s %s %s %s\n", ev.CreatedAt.Format("15:04:05.000"), ev.Type, ev.ID, ev.Data)
			return nil
		},
	}
	mux := http.NewServeMux()
	mux.Handle("POST /antaca", rc)
	log.Printf("listening on %s, POST /antaca", *addr)
	if *cert != "" {
		log.Fatal(http.ListenAndServeTLS(*addr, *cert, *key, mux))
	}
	log.Fatal(http.ListenAndServe(*addr, mux))
}
