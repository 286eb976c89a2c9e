package api

// Who may call an admin route.
var (
	adminOnly = []Role{RoleAdmin}
	managers  = []Role{RoleAdmin, RoleManager}
	staff     = []Role{RoleAdmin, RoleManager, RoleEmployee}
	bureau    = []Role{RoleAdmin, RoleBureau}
	anyRole   = []Role{RoleAdmin, RoleManager, RoleEmployee, RoleBureau}
)

// routes is the API: every route with its channel, the admin roles allowed
// and whether JWE is required. README.md
// and openapi.yaml (x-roles, x-jwe) state the same; TestRouteTableMatchesOpenAPI
// keeps them in step.
func (s *Server) routes() []route {
	return []route{
		// Public.
		{pattern: "GET /openapi.yaml", ch: public, h: s.openapi},
		{pattern: "GET /.well-known/jwks.json", ch: public, h: s.jwks},
		{pattern: "GET /public-key", ch: public, h: s.publicKey},
		{pattern: "POST /admin/login", ch: public, h: s.login},
		{pattern: "POST /kyc/callback", ch: public, h: s.kycCallback},

		// Mobile application: /customers/me, customer session token.
		{pattern: "GET /customers/me", ch: customerCh, h: s.getCustomer},
		{pattern: "DELETE /customers/me/session", ch: customerCh, h: s.logout},
		{pattern: "POST /customers/me/register", ch: customerCh, h: s.startKYC},
		{pattern: "POST /customers/me/balances", create: true, ch: customerCh, h: s.createBalance},
		{pattern: "GET /customers/me/balances", ch: customerCh, h: s.listBalances},
		{pattern: "GET /customers/me/balances/{balanceId}", ch: customerCh, h: s.getBalance},
		{pattern: "POST /customers/me/cards/virtual", create: true, ch: customerCh, jwe: true, h: s.createVirtual},
		{pattern: "POST /customers/me/cards/virtual/async", create: true, ch: customerCh, h: s.createVirtualAsync},
		{pattern: "POST /customers/me/cards/physical", create: true, ch: customerCh, jwe: true, h: s.orderPhysical},
		{pattern: "GET /customers/me/cards", ch: customerCh, h: s.listCards},
		{pattern: "GET /customers/me/cards/{cardId}", ch: customerCh, jwe: true, h: s.fullData},
		{pattern: "GET /customers/me/cards/{cardId}/transactions", ch: customerCh, h: s.cardTransactions},
		{pattern: "GET /customers/me/cards/{cardId}/transactions/{transactionId}", ch: customerCh, h: s.cardTransaction},
		{pattern: "GET /customers/me/balances/{balanceId}/transactions", ch: customerCh, h: s.balanceTransactions},
		{pattern: "GET /customers/me/cards/{cardId}/status", ch: customerCh, h: s.cardStatus},
		{pattern: "POST /customers/me/cards/{cardId}/print", create: true, ch: customerCh, jwe: true, h: s.printCard},
		{pattern: "POST /customers/me/cards/{cardId}/activate", ch: customerCh, h: s.activateCard},
		{pattern: "POST /customers/me/cards/{cardId}/lock", ch: customerCh, h: s.lockCard},
		{pattern: "POST /customers/me/cards/{cardId}/unlock", ch: customerCh, h: s.unlockCard},
		{pattern: "POST /customers/me/cards/{cardId}/replace", create: true, ch: customerCh, jwe: true, h: s.replaceCard},
		{pattern: "DELETE /customers/me/cards/{cardId}", ch: customerCh, h: s.removeCard},
		{pattern: "POST /customers/me/cards/{cardId}/cvv", ch: customerCh, jwe: true, h: s.resetCVV},
		{pattern: "POST /customers/me/cards/{cardId}/pin", ch: customerCh, jwe: true, h: s.setPIN},
		{pattern: "GET /customers/me/cards/{cardId}/controls", ch: customerCh, h: s.getCardControls},
		{pattern: "PUT /customers/me/cards/{cardId}/controls", ch: customerCh, h: s.setCardControls},

		// Server-to-server: /secure, partner client certificate.
		{pattern: "POST /secure/customers", create: true, ch: partnerCh, h: s.createCustomer},
		{pattern: "GET /secure/customers/{customerId}", ch: partnerCh, h: s.getCustomer},
		{pattern: "POST /secure/customers/{customerId}/register", ch: partnerCh, h: s.startKYC},
		{pattern: "PUT /secure/customers/{customerId}/kyc", ch: partnerCh, h: s.setKYC},
		{pattern: "GET /secure/customers/{customerId}/kyc-checks", ch: partnerCh, h: s.listKYCChecks},
		{pattern: "POST /secure/customers/{customerId}/sessions", ch: partnerCh, h: s.createCustomerSession},
		{pattern: "POST /secure/customers/{customerId}/balances", create: true, ch: partnerCh, h: s.createBalance},
		{pattern: "GET /secure/customers/{customerId}/balances", ch: partnerCh, h: s.listBalances},
		{pattern: "GET /secure/customers/{customerId}/balances/{balanceId}", ch: partnerCh, h: s.getBalance},
		{pattern: "POST /secure/customers/{customerId}/balances/{balanceId}/reload", ch: partnerCh, h: s.reloadBalance},
		{pattern: "POST /secure/customers/{customerId}/cards/virtual", create: true, ch: partnerCh, jwe: true, h: s.createVirtual},
		{pattern: "POST /secure/customers/{customerId}/cards/virtual/async", create: true, ch: partnerCh, h: s.createVirtualAsync},
		{pattern: "POST /secure/customers/{customerId}/cards/physical", create: true, ch: partnerCh, jwe: true, h: s.orderPhysical},
		{pattern: "GET /secure/customers/{customerId}/cards", ch: partnerCh, h: s.listCards},
		{pattern: "GET /secure/customers/{customerId}/cards/{cardId}", ch: partnerCh, jwe: true, h: s.fullData},
		{pattern: "GET /secure/customers/{customerId}/cards/{cardId}/transactions", ch: partnerCh, h: s.cardTransactions},
		{pattern: "GET /secure/customers/{customerId}/cards/{cardId}/transactions/{transactionId}", ch: partnerCh, h: s.cardTransaction},
		{pattern: "GET /secure/customers/{customerId}/balances/{balanceId}/transactions", ch: partnerCh, h: s.balanceTransactions},
		{pattern: "GET /secure/customers/{customerId}/cards/{cardId}/status", ch: partnerCh, h: s.cardStatus},
		{pattern: "POST /secure/customers/{customerId}/cards/{cardId}/print", create: true, ch: partnerCh, jwe: true, h: s.printCard},
		{pattern: "POST /secure/customers/{customerId}/cards/{cardId}/activate", ch: partnerCh, h: s.activateCard},
		{pattern: "POST /secure/customers/{customerId}/cards/{cardId}/lock", ch: partnerCh, h: s.lockCard},
		{pattern: "POST /secure/customers/{customerId}/cards/{cardId}/unlock", ch: partnerCh, h: s.unlockCard},
		{pattern: "POST /secure/customers/{customerId}/cards/{cardId}/external-lock", ch: partnerCh, h: s.externalLock},
		{pattern: "POST /secure/customers/{customerId}/cards/{cardId}/replace", create: true, ch: partnerCh, jwe: true, h: s.replaceCard},
		{pattern: "DELETE /secure/customers/{customerId}/cards/{cardId}", ch: partnerCh, h: s.removeCard},
		{pattern: "GET /secure/customers/{customerId}/cards/{cardId}/controls", ch: partnerCh, h: s.getCardControls},
		{pattern: "PUT /secure/customers/{customerId}/cards/{cardId}/controls", ch: partnerCh, h: s.setCardControls},
		{pattern: "DELETE /secure/customers/{customerId}/cards/{cardId}/controls", ch: partnerCh, h: s.deleteCardControls},
		{pattern: "GET /secure/programs", ch: partnerCh, h: s.listPrograms},
		{pattern: "GET /secure/partner/balances", ch: partnerCh, h: s.listPartnerBalances},
		{pattern: "GET /secure/webhooks", ch: partnerCh, h: s.listWebhooks},
		{pattern: "POST /secure/webhooks", ch: partnerCh, h: s.createWebhook},
		{pattern: "DELETE /secure/webhooks/{endpointId}", ch: partnerCh, h: s.deleteWebhook},
		{pattern: "POST /secure/webhooks/{endpointId}/rotate-secret", ch: partnerCh, h: s.rotateWebhookSecret},
		{pattern: "POST /secure/webhooks/{endpointId}/disable", ch: partnerCh, h: s.disableWebhook},
		{pattern: "POST /secure/webhooks/{endpointId}/enable", ch: partnerCh, h: s.enableWebhook},
		{pattern: "GET /secure/webhooks/{endpointId}/deliveries", ch: partnerCh, h: s.listDeliveries},
		{pattern: "POST /secure/webhooks/{endpointId}/deliveries/{deliveryId}/redeliver", ch: partnerCh, h: s.redeliver},

		// Administration panel: /admin, admin session token and role.
		{pattern: "DELETE /admin/session", ch: adminCh, roles: anyRole, h: s.logout},
		{pattern: "GET /admin/session", ch: adminCh, roles: anyRole, h: s.adminSession},
		{pattern: "GET /admin/users", ch: adminCh, roles: adminOnly, h: s.listAdmins},
		{pattern: "POST /admin/users", ch: adminCh, roles: adminOnly, h: s.createAdmin},
		{pattern: "DELETE /admin/users/{username}", ch: adminCh, roles: adminOnly, h: s.deleteAdmin},
		{pattern: "PATCH /admin/users/{username}", ch: adminCh, roles: adminOnly, h: s.updateAdmin},
		{pattern: "GET /admin/partners", ch: adminCh, roles: managers, h: s.listPartners},
		{pattern: "POST /admin/partners", create: true, ch: adminCh, roles: adminOnly, h: s.createPartner},
		{pattern: "GET /admin/partners/{partnerId}", ch: adminCh, roles: managers, h: s.getPartner},
		{pattern: "GET /admin/partners/{partnerId}/balances", ch: adminCh, roles: managers, h: s.listPartnerBalances},
		{pattern: "POST /admin/partners/{partnerId}/balances", create: true, ch: adminCh, roles: adminOnly, h: s.createPartnerBalance},
		{pattern: "GET /admin/partners/{partnerId}/balances/{balanceId}", ch: adminCh, roles: managers, h: s.getPartnerBalance},
		{pattern: "POST /admin/partners/{partnerId}/balances/{balanceId}/reload", ch: adminCh, roles: adminOnly, h: s.reloadPartnerBalance},
		{pattern: "POST /admin/partners/{partnerId}/customers", create: true, ch: adminCh, roles: managers, h: s.createCustomer},
		{pattern: "GET /admin/partners/{partnerId}/notice-emails", ch: adminCh, roles: managers, h: s.getNoticeEmails},
		{pattern: "PUT /admin/partners/{partnerId}/notice-emails", ch: adminCh, roles: adminOnly, h: s.setNoticeEmails},
		{pattern: "GET /admin/partners/{partnerId}/programs", ch: adminCh, roles: managers, h: s.listPrograms},
		{pattern: "POST /admin/partners/{partnerId}/programs", create: true, ch: adminCh, roles: adminOnly, h: s.createProgram},
		{pattern: "GET /admin/partners/{partnerId}/programs/{programId}", ch: adminCh, roles: managers, h: s.getProgram},
		{pattern: "PUT /admin/partners/{partnerId}/programs/{programId}", ch: adminCh, roles: adminOnly, h: s.updateProgram},
		{pattern: "GET /admin/partners/{partnerId}/programs/{programId}/controls", ch: adminCh, roles: managers, h: s.getProgramControls},
		{pattern: "PUT /admin/partners/{partnerId}/programs/{programId}/controls", ch: adminCh, roles: adminOnly, h: s.setProgramControls},
		{pattern: "POST /admin/partners/{partnerId}/programs/{programId}/controls/replay", ch: adminCh, roles: managers, h: s.replayControls},
		{pattern: "GET /admin/partners/{partnerId}/webhooks", ch: adminCh, roles: managers, h: s.listWebhooks},
		{pattern: "POST /admin/partners/{partnerId}/webhooks", ch: adminCh, roles: adminOnly, h: s.createWebhook},
		{pattern: "DELETE /admin/partners/{partnerId}/webhooks/{endpointId}", ch: adminCh, roles: adminOnly, h: s.deleteWebhook},
		{pattern: "POST /admin/partners/{partnerId}/webhooks/{endpointId}/rotate-secret", ch: adminCh, roles: adminOnly, h: s.rotateWebhookSecret},
		{pattern: "POST /admin/partners/{partnerId}/webhooks/{endpointId}/disable", ch: adminCh, roles: adminOnly, h: s.disableWebhook},
		{pattern: "POST /admin/partners/{partnerId}/webhooks/{endpointId}/enable", ch: adminCh, roles: adminOnly, h: s.enableWebhook},
		{pattern: "GET /admin/partners/{partnerId}/webhooks/{endpointId}/deliveries", ch: adminCh, roles: managers, h: s.listDeliveries},
		{pattern: "POST /admin/partners/{partnerId}/webhooks/{endpointId}/deliveries/{deliveryId}/redeliver", ch: adminCh, roles: adminOnly, h: s.redeliver},
		{pattern: "GET /admin/customers", ch: adminCh, roles: staff, h: s.searchCustomers},
		{pattern: "GET /admin/customers/{customerId}", ch: adminCh, roles: staff, h: s.getCustomer},
		{pattern: "GET /admin/customers/{customerId}/cards", ch: adminCh, roles: staff, h: s.customerCards},
		{pattern: "PUT /admin/customers/{customerId}/kyc", ch: adminCh, roles: managers, h: s.setKYC},
		{pattern: "GET /admin/customers/{customerId}/kyc-checks", ch: adminCh, roles: staff, h: s.listKYCChecks},
		{pattern: "GET /admin/customers/{customerId}/balances", ch: adminCh, roles: staff, h: s.listBalances},
		{pattern: "POST /admin/customers/{customerId}/cards/virtual", create: true, ch: adminCh, roles: managers, jwe: true, h: s.createVirtual},
		{pattern: "POST /admin/customers/{customerId}/cards/physical", create: true, ch: adminCh, roles: staff, jwe: true, h: s.orderPhysical},
		{pattern: "GET /admin/balances/{balanceId}", ch: adminCh, roles: staff, h: s.getBalance},
		{pattern: "POST /admin/balances/{balanceId}/reload", ch: adminCh, roles: managers, h: s.reloadBalance},
		{pattern: "GET /admin/cards/{cardId}/status", ch: adminCh, roles: staff, h: s.cardStatus},
		{pattern: "GET /admin/cards/{cardId}/authorizations", ch: adminCh, roles: staff, h: s.cardAuthorizations},
		{pattern: "GET /admin/cards/{cardId}/transactions", ch: adminCh, roles: staff, h: s.cardTransactions},
		{pattern: "GET /admin/cards/{cardId}/transactions/{transactionId}", ch: adminCh, roles: staff, h: s.cardTransaction},
		{pattern: "GET /admin/balances/{balanceId}/transactions", ch: adminCh, roles: staff, h: s.balanceTransactions},
		{pattern: "POST /admin/cards/{cardId}/print", create: true, ch: adminCh, roles: staff, jwe: true, h: s.printCard},
		{pattern: "POST /admin/cards/{cardId}/activate", ch: adminCh, roles: staff, h: s.activateCard},
		{pattern: "POST /admin/cards/{cardId}/lock", ch: adminCh, roles: staff, h: s.lockCard},
		{pattern: "POST /admin/cards/{cardId}/unlock", ch: adminCh, roles: managers, h: s.unlockCard},
		{pattern: "POST /admin/cards/{cardId}/external-lock", ch: adminCh, roles: staff, h: s.externalLock},
		{pattern: "POST /admin/cards/{cardId}/replace", create: true, ch: adminCh, roles: staff, jwe: true, h: s.replaceCard},
		{pattern: "DELETE /admin/cards/{cardId}", ch: adminCh, roles: managers, h: s.removeCard},
		{pattern: "POST /admin/cards/{cardId}/cvv", ch: adminCh, roles: staff, jwe: true, h: s.resetCVV},
		{pattern: "GET /admin/cards/{cardId}/controls", ch: adminCh, roles: staff, h: s.getCardControls},
		{pattern: "PUT /admin/cards/{cardId}/controls", ch: adminCh, roles: managers, h: s.setCardControls},
		{pattern: "DELETE /admin/cards/{cardId}/controls", ch: adminCh, roles: managers, h: s.deleteCardControls},
		{pattern: "GET /admin/summaries", ch: adminCh, roles: managers, h: s.summaries},
		{pattern: "GET /admin/authorizations/stats", ch: adminCh, roles: staff, h: s.authorizationStats},
		{pattern: "GET /admin/bureau/orders", ch: adminCh, roles: bureau, h: s.bureauOrders},
		{pattern: "POST /admin/bureau/cards/{cardId}/personalised", ch: adminCh, roles: bureau, h: s.bureauPersonalised},
	}
}

// RouteInfo describes one route for documentation and tests.
type RouteInfo struct {
	Pattern   string // "METHOD /path", as registered on the mux
	Channel   string // public, customer, secure or admin
	Roles     []Role // admin channel: the roles allowed
	Encrypted bool   // JWE required
	Create    bool   // creates a resource; Idempotency-Key makes retries safe
}

// Routes lists the API's routes.
func Routes() []RouteInfo {
	names := map[channel]string{public: "public", customerCh: "customer", partnerCh: "secure", adminCh: "admin"}
	var out []RouteInfo
	for _, r := range (&Server{}).routes() {
		out = append(out, RouteInfo{Pattern: r.pattern, Channel: names[r.ch], Roles: r.roles, Encrypted: r.jwe, Create: r.create})
	}
	return out
}
