// Package simulator is Antaca's bundled card network: it connects to the
// switch the way a processor does (several ISO 8583 links, sign-on, echo on
// idle, reconnect with backoff, optional TLS, either profile and framing),
// provisions test programs through the REST API, runs scripted scenarios
// with expected action codes and balances, generates open-model load with
// latency measured from the scheduled send time, and plays the
// personalisation bureau for physical cards and the KYC provider.
//
// Commands (antaca sim ...):
//
//	seed     provision partner, customers, balances and cards; write the cards file
//	run      run scenario files and report pass/fail per step
//	load     fixed-rate (optionally ramped) load with a latency report and plot
//	bureau   personalise ordered physical cards so that they get linked
//	kyc-provider  play the KYC provider: verify or reject customers by a rule, call the switch back
//	partner       play a program's decisioning backend (remoteUrl) with latency and failure knobs
//	webhooks      play a partner's webhook endpoint: verify signatures, count, answer 204
//
// The cards file written by seed is the one place where PANs appear in
// clear: they are test data. Everything else (logs, reports, failure
// messages) shows PANs masked to the first 6 and last 4 digits.
//
// Issuer actions (customers, balances, cards, locks) go through the Issuer
// interface: RESTIssuer speaks the REST API (api/openapi.yaml) as partners,
// apps and admins do; DirectIssuer drives authz/issuing and the ledger in
// process, for benchmarks and for environments without the API.
package simulator
