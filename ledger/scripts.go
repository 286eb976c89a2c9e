package ledger

import (
	"embed"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/authz/issuing"
)

//go:embed lua/*.lua
var luaFS embed.FS

// scriptNames are the ledger's scripts; each is lua/<name>.lua prefixed
// with lua/common.lua and lua/controls.lua.
var scriptNames = []string{
	"create_partner", "create_partner_balance", "reload_partner_balance",
	"create_customer", "set_kyc", "create_user_balance", "reload_user_balance",
	"reserve", "force_post", "capture", "void", "refund", "expire",
	"create_card", "update_card", "lock_card", "unlock_card", "remove_card",
	"pin_result", "card_by_pan", "record_decline", "velocity", "cancel_late",
	"replace_card", "activate_card",
	"create_program", "update_program", "set_card_controls", "default_program",
}

func loadScripts() (map[string]*redis.Script, error) {
	common, err := luaFS.ReadFile("lua/common.lua")
	if err != nil {
		return nil, fmt.Errorf("reading common.lua: %w", err)
	}
	controls, err := luaFS.ReadFile("lua/controls.lua")
	if err != nil {
		return nil, fmt.Errorf("reading controls.lua: %w", err)
	}
	common = append(append(common, '\n'), controls...)
	out := make(map[string]*redis.Script, len(scriptNames))
	for _, name := range scriptNames {
		body, err := luaFS.ReadFile("lua/" + name + ".lua")
		if err != nil {
			return nil, fmt.Errorf("reading %s.lua: %w", name, err)
		}
		// The body runs as a function so that its result can be returned
		// together with the journal entries emit() collected.
		src := string(common) + "\nlocal __result = (function()\n" + string(body) + "\nend)()\n" + scriptEpilogue
		out[name] = redis.NewScript(src)
	}
	return out, nil
}

// Errors the scripts return; callers branch on them with errors.Is. The
// card errors are package authz's and issuing's, so that the domain
// branches on them without importing the ledger.
var (
	ErrNotFound                 = errors.New("not found")
	ErrAlreadyExists            = errors.New("already exists")
	ErrInvalidAmount            = errors.New("invalid amount")
	ErrIdempotencyMismatch      = errors.New("idempotency key reused with a different amount")
	ErrInsufficientPartnerFunds = errors.New("insufficient partner funds")
	ErrKYCNotVerified           = errors.New("customer KYC is not verified")
	ErrBalanceNotActive         = errors.New("balance is not active")
	ErrHoldNotFound             = errors.New("hold not found")
	ErrHoldClosed               = errors.New("hold already resolved")
	ErrAmountExceedsHold        = errors.New("amount exceeds what remains of the hold")
	ErrCardNotFound             = errors.New("card not found")
	ErrCardRemoved              = issuing.ErrCardRemoved
	ErrInvalidTransition        = authz.ErrInvalidTransition
	ErrLockIrreversible         = authz.ErrLockIrreversible
	ErrCardNotLocked            = errors.New("card is not locked")
	ErrPANExists                = issuing.ErrPANExists
	ErrPartnerNotFound          = errors.New("partner not found")
	ErrBINInUse                 = errors.New("BIN belongs to another partner")
	ErrCustomerNotFound         = errors.New("customer not found")
	ErrBalanceNotFound          = errors.New("balance not found")
	ErrCardChanged              = errors.New("card changed since it was read")
	ErrBalanceLimit             = errors.New("balance would exceed the largest amount the wire can carry")
	ErrInvalidColumn            = errors.New("column cannot be set this way")
	ErrCardReplaced             = issuing.ErrCardReplaced
	ErrRangeInUse               = errors.New("BIN range overlaps another program's")
	ErrProgramNotFound          = issuing.ErrProgramNotFound
)

var scriptErrors = map[string]error{
	"NOT_FOUND":                  ErrNotFound,
	"ALREADY_EXISTS":             ErrAlreadyExists,
	"INVALID_AMOUNT":             ErrInvalidAmount,
	"IDEMPOTENCY_MISMATCH":       ErrIdempotencyMismatch,
	"INSUFFICIENT_PARTNER_FUNDS": ErrInsufficientPartnerFunds,
	"KYC_NOT_VERIFIED":           ErrKYCNotVerified,
	"BALANCE_NOT_ACTIVE":         ErrBalanceNotActive,
	"HOLD_NOT_FOUND":             ErrHoldNotFound,
	"HOLD_CLOSED":                ErrHoldClosed,
	"AMOUNT_EXCEEDS_HOLD":        ErrAmountExceedsHold,
	"CARD_NOT_FOUND":             ErrCardNotFound,
	"CARD_REMOVED":               ErrCardRemoved,
	"INVALID_TRANSITION":         ErrInvalidTransition,
	"CARD_LOCK_IRREVERSIBLE":     ErrLockIrreversible,
	"CARD_NOT_LOCKED":            ErrCardNotLocked,
	"PAN_EXISTS":                 ErrPANExists,
	"PARTNER_NOT_FOUND":          ErrPartnerNotFound,
	"CUSTOMER_NOT_FOUND":         ErrCustomerNotFound,
	"BALANCE_NOT_FOUND":          ErrBalanceNotFound,
	"CARD_CHANGED":               ErrCardChanged,
	"BALANCE_LIMIT":              ErrBalanceLimit,
	"INVALID_COLUMN":             ErrInvalidColumn,
	"CARD_REPLACED":              ErrCardReplaced,
}

// mapScriptError turns a script's error reply into a sentinel error.
func mapScriptError(op string, err error) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		// Redis 7 prefixes error_reply messages without a code with "ERR ".
		msg := strings.TrimPrefix(strings.TrimSpace(rerr.Error()), "ERR ")
		if sentinel, ok := scriptErrors[msg]; ok {
			return fmt.Errorf("%s: %w", op, sentinel)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}
