package api

import (
	"errors"
	"net/http"

	"github.com/antaca/antaca/authz/issuing"
	"github.com/antaca/antaca/ledger"
)

// Error is an error the API answers with its own status and code, e.g. a
// validation failure found in this package.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the request field at fault, when there is one.
	Field string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func apiErr(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

func invalid(field, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "VALIDATION_ERROR", Message: msg, Field: field}
}

// errorTable maps the domain's sentinel errors to HTTP. It is the one place
// to check against README.md ("Errors") and openapi.yaml. Entries are tried in
// order with errors.Is; an error matching none is internal (500, logged).
var errorTable = []struct {
	err     error
	status  int
	code    string
	message string
}{
	// Not found. Ids of another partner answer the same (no existence leak).
	{ledger.ErrPartnerNotFound, 404, "PARTNER_NOT_FOUND", "partner not found"},
	{ledger.ErrCustomerNotFound, 404, "CUSTOMER_NOT_FOUND", "customer not found"},
	{ledger.ErrBalanceNotFound, 404, "BALANCE_NOT_FOUND", "balance not found"},
	{ledger.ErrCardNotFound, 404, "CARD_NOT_FOUND", "card not found"},
	{ledger.ErrProgramNotFound, 404, "PROGRAM_NOT_FOUND", "program not found"},
	{ledger.ErrNotFound, 404, "NOT_FOUND", "not found"},
	// Conflicts with the current state.
	{ledger.ErrAlreadyExists, 409, "ALREADY_EXISTS", "already exists"},
	{ledger.ErrBINInUse, 409, "BIN_IN_USE", "the BIN belongs to another partner program"},
	{ledger.ErrRangeInUse, 409, "BIN_RANGE_IN_USE", "a BIN range overlaps a range of another program"},
	{issuing.ErrCardTypeNotInProgram, 409, "CARD_TYPE_NOT_IN_PROGRAM", "the program does not issue this card type"},
	{issuing.ErrProgramCurrency, 409, "PROGRAM_CURRENCY_MISMATCH", "the balance is not in the program's currency"},
	{ledger.ErrKYCNotVerified, 409, "KYC_NOT_VERIFIED", "the customer's KYC is not verified"},
	{ledger.ErrBalanceNotActive, 409, "BALANCE_NOT_ACTIVE", "the balance is not active"},
	{ledger.ErrInsufficientPartnerFunds, 409, "INSUFFICIENT_PARTNER_FUNDS", "the partner credit balance is short; nothing was changed"},
	{ledger.ErrLockIrreversible, 409, "CARD_LOCK_IRREVERSIBLE", "the card is locked for good (reason 1, 2, 5 or 8)"},
	{ledger.ErrCardNotLocked, 409, "CARD_NOT_LOCKED", "the card is not locked"},
	{ledger.ErrCardRemoved, 409, "CARD_REMOVED", "the card is removed and cannot be restored"},
	{ledger.ErrInvalidTransition, 409, "INVALID_CARD_STATE", "the card's state does not allow this operation"},
	{issuing.ErrWrongCardType, 409, "WRONG_CARD_TYPE", "operation not available for this card type"},
	{issuing.ErrNoBIN, 409, "PARTNER_HAS_NO_BIN", "the partner program has no BIN to issue cards from"},
	{ledger.ErrBalanceLimit, 409, "BALANCE_LIMIT_EXCEEDED", "the balance would exceed 999999999999 minor units, the most an answer can carry; nothing was changed"},
	{issuing.ErrNotDigitalFirst, 409, "NOT_DIGITAL_FIRST", "the partner program is not registered for digital first: its virtual cards get no plastic copy"},
	{ledger.ErrCardReplaced, 409, "CARD_ALREADY_REPLACED", "the card was replaced already"},
	{ledger.ErrIdempotencyMismatch, 422, "IDEMPOTENCY_KEY_REUSED", "the Idempotency-Key was used with a different amount"},
	// Bad input the ledger caught.
	{ledger.ErrInvalidAmount, 400, "INVALID_AMOUNT", "amount must be a positive integer in minor units"},
	{issuing.ErrInvalidPIN, 400, "INVALID_PIN", "PIN must be 4 to 12 digits"},
}

// toAPIError translates any error into what the client sees; internal
// reports whether it is a server fault (logged as an error, details hidden).
func toAPIError(err error) (e *Error, internal bool) {
	var ae *Error
	if errors.As(err, &ae) {
		return ae, ae.Status >= 500
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errTooLarge, false
	}
	for _, row := range errorTable {
		if errors.Is(err, row.err) {
			return &Error{Status: row.status, Code: row.code, Message: row.message}, false
		}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "INTERNAL", Message: "internal error"}, true
}

// Errors of the API layer itself (status and code in the values).
var (
	errTooLarge             = apiErr(413, "PAYLOAD_TOO_LARGE", "request body over 64 KiB")
	errNotReady             = apiErr(503, "NOT_READY", "the switch is rebuilding its state from Postgres; retry shortly")
	errUnauthorized         = apiErr(401, "UNAUTHORIZED", "a valid session token is required (Authorization: Bearer <token>)")
	errSessionExpired       = apiErr(401, "SESSION_EXPIRED", "the session has expired; authenticate again")
	errClientCertRequired   = apiErr(401, "CLIENT_CERTIFICATE_REQUIRED", "a client certificate signed by the partner CA is required")
	errUnknownPartner       = apiErr(403, "UNKNOWN_PARTNER", "the client certificate names no registered partner")
	errForbidden            = apiErr(403, "FORBIDDEN", "your role does not allow this operation")
	errBadCredentials       = apiErr(401, "INVALID_CREDENTIALS", "wrong username or password")
	errTooManyAttempts      = apiErr(429, "TOO_MANY_ATTEMPTS", "too many failed logins; retry after the Retry-After seconds")
	errEncryptionRequired   = apiErr(400, "ENCRYPTION_REQUIRED", "this endpoint requires a JWE request (headers Encrypted-Request: true and Public-Key)")
	errInvalidPublicKey     = apiErr(400, "INVALID_PUBLIC_KEY", "Public-Key must be base64 of the PEM of an RSA public key of 2048 to 8192 bits")
	errInvalidPayload       = apiErr(400, "INVALID_PAYLOAD", `body must be {"payload": "<compact JWE>"} holding a JSON object`)
	errCantDecrypt          = apiErr(400, "CANT_DECRYPT_PAYLOAD", "the payload cannot be decrypted: encrypt to the server key (GET /public-key) with RSA-OAEP-256 or RSA-OAEP and A256GCM")
	errEncryptionNotOffered = apiErr(400, "ENCRYPTION_NOT_SUPPORTED", "this endpoint takes and returns plain JSON; send it without Encrypted-Request: true")
	errMalformedJSON        = apiErr(400, "MALFORMED_JSON", "request body is not valid JSON")
	errBodyRequired         = apiErr(400, "VALIDATION_ERROR", "a JSON request body is required")
	errCustomerNotFound     = apiErr(404, "CUSTOMER_NOT_FOUND", "customer not found")
	errBalanceNotFound      = apiErr(404, "BALANCE_NOT_FOUND", "balance not found")
	errCardNotFound         = apiErr(404, "CARD_NOT_FOUND", "card not found")
	errPartnerNotFound      = apiErr(404, "PARTNER_NOT_FOUND", "partner not found")
	errAdminNotFound        = apiErr(404, "ADMIN_NOT_FOUND", "admin user not found")
	errNotFound             = apiErr(404, "NOT_FOUND", "no such route")
	errMethodNotAllowed     = apiErr(405, "METHOD_NOT_ALLOWED", "method not allowed on this route")
)
