// Package iso is the wire side of the authorization switch: ISO 8583:1987
// ASCII over TCP as its interface document, README.md, describes it.
//
// It owns the two wire profiles (cmf with 4-digit action codes, iso87 with
// 2-character response codes), the length framing, the mapping from
// messages to authz.Request and from authz.Decision back to a response, the
// reason -> DE39 table, network management, and the TCP Server with its
// deadlines, limits, drain and metrics. Decisions come from an Authorizer,
// declared here where it is consumed; package iso knows nothing of cards,
// balances or stores.
//
// README.md in this directory is the interface document for processors.
package iso
