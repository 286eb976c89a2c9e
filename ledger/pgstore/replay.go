package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
)

// ProgramTraffic reads a program's past authorizations and hold releases
// from the journal in Postgres, in journal order, for a replay of controls
// (authz.Replay). Cards of the program with controls of their own are left
// out and counted (skipped). It only reads.
func ProgramTraffic(ctx context.Context, pool *pgxpool.Pool, partnerID, programID string, since time.Time) (events []authz.ReplayEvent, skipped int, err error) {
	def := programID == ledger.DefaultProgramID(partnerID)
	rows, err := pool.Query(ctx, `SELECT id, controls FROM cards
		WHERE partner_id = $1 AND (program_id = $2 OR ($3 AND program_id = '')) AND copy_of = ''`, partnerID, programID, def)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the program's cards: %w", err)
	}
	inProgram := map[string]bool{}
	for rows.Next() {
		var id, controls string
		if err := rows.Scan(&id, &controls); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("reading the program's cards: %w", err)
		}
		if controls != "" {
			skipped++
			continue
		}
		inProgram[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("reading the program's cards: %w", err)
	}
	rows, err = pool.Query(ctx, `SELECT partner_id, seq, type, reason, ts_ms, changes, meta FROM journal
		WHERE partner_id = $1 AND ts_ms >= $2
		  AND type IN ('reserve', 'financial', 'decline', 'void', 'expire', 'late_cancel')
		ORDER BY seq`, partnerID, since.UnixMilli())
	if err != nil {
		return nil, 0, fmt.Errorf("reading the journal: %w", err)
	}
	entries, err := collectEntries(rows)
	if err != nil {
		return nil, 0, err
	}
	holdCard := map[string]string{}
	for _, e := range entries {
		at := time.UnixMilli(e.TsMs)
		switch e.Type {
		case "reserve", "financial":
			m := replayMeta(e.Meta)
			if !inProgram[m.Card] {
				continue
			}
			for _, c := range e.Changes {
				if c.Table != "holds" || c.Set == nil {
					continue
				}
				amount := atoi64(c.Set["approved"])
				if amount == 0 {
					amount = atoi64(c.Set["amount"])
				}
				holdCard[c.ID] = m.Card
				events = append(events, authz.ReplayEvent{Seq: e.Seq, At: at, Kind: "approved", Reason: authz.Reason(e.Reason),
					CardID: m.Card, HoldID: c.ID, Amount: amount, Req: m.request()})
			}
		case "decline":
			m := replayMeta(e.Meta)
			if !inProgram[m.Card] || m.MTI == "" || m.Txn == authz.TxnRefund || m.Txn == authz.TxnBalanceInquiry {
				continue
			}
			events = append(events, authz.ReplayEvent{Seq: e.Seq, At: at, Kind: "declined", Reason: authz.Reason(e.Reason),
				CardID: m.Card, Amount: m.Amount, Req: m.request()})
		default: // void, expire, late_cancel: releases
			for _, c := range e.Changes {
				if c.Table != "holds" || holdCard[c.ID] == "" {
					continue
				}
				if n, _ := strconv.ParseInt(c.Add["released"], 10, 64); n > 0 {
					events = append(events, authz.ReplayEvent{Seq: e.Seq, At: at, Kind: "released", CardID: holdCard[c.ID], HoldID: c.ID, Amount: n})
				}
			}
		}
	}
	return events, skipped, nil
}

// replayContext is the part of a decision's journal context a replay reads.
type replayContext struct {
	MTI          string `json:"mti"`
	Card         string `json:"card"`
	Amount       int64  `json:"amount"`
	MCC          string `json:"mcc"`
	Txn          string `json:"txn"`
	POS          string `json:"pos"`
	Country      string `json:"country"`
	MerchantName string `json:"merchant_name"`
}

func replayMeta(raw json.RawMessage) replayContext {
	var m replayContext
	_ = json.Unmarshal(raw, &m)
	return m
}

func (m replayContext) request() authz.Request {
	return authz.Request{MTI: m.MTI, TxnType: m.Txn, MCC: m.MCC, POSEntryMode: m.POS, MerchantCountry: m.Country, MerchantName: m.MerchantName}
}

// ErrProgramUnknown says no program has the id (replay).
var ErrProgramUnknown = errors.New("no such program")

// ReplayProgram replays controls over a program's traffic from since to
// until, in the program's time zone, and reports what they would have
// declined and approved (authz.Replay). partnerID may be "" (program ids
// are unique). It reads Postgres only: traffic the write-behind has not
// written yet (seconds at most) is not in it.
func ReplayProgram(ctx context.Context, pool *pgxpool.Pool, partnerID, programID string, c authz.Controls, since, until time.Time, top int) (authz.ReplayReport, error) {
	var pid, tz string
	err := pool.QueryRow(ctx, `SELECT partner_id, time_zone FROM programs WHERE id = $1 AND ($2 = '' OR partner_id = $2)`,
		programID, partnerID).Scan(&pid, &tz)
	if errors.Is(err, pgx.ErrNoRows) {
		return authz.ReplayReport{}, fmt.Errorf("replaying program %q: %w", programID, ErrProgramUnknown)
	}
	if err != nil {
		return authz.ReplayReport{}, fmt.Errorf("reading program: %w", err)
	}
	return ReplayTraffic(ctx, pool, pid, programID, authz.Program{TimeZone: tz}.Location(), c, since, until, top)
}

// ReplayTraffic is ReplayProgram for a program the caller knows, with its
// time zone.
func ReplayTraffic(ctx context.Context, pool *pgxpool.Pool, partnerID, programID string, loc *time.Location, c authz.Controls, since, until time.Time, top int) (authz.ReplayReport, error) {
	events, skipped, err := ProgramTraffic(ctx, pool, partnerID, programID, since)
	if err != nil {
		return authz.ReplayReport{}, err
	}
	kept := events[:0]
	for _, e := range events {
		if !e.At.After(until) {
			kept = append(kept, e)
		}
	}
	rep := authz.Replay(c, loc, kept, top)
	rep.Since, rep.Until, rep.SkippedCards = since.UTC(), until.UTC(), skipped
	return rep, nil
}
