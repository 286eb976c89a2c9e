package panel

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
)

// Signing in. The login form is protected from cross-site posting by a
// random value in both a cookie and the form (SameSite=Strict keeps other
// sites from sending the cookie).

func (p *Panel) loginPage(w http.ResponseWriter, r *http.Request) {
	p.showLogin(w, r, http.StatusOK, "", nil)
}

func (p *Panel) showLogin(w http.ResponseWriter, r *http.Request, status int, username string, fe *formError) {
	raw := make([]byte, 18)
	_, _ = rand.Read(raw)
	nonce := base64.RawURLEncoding.EncodeToString(raw)
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: nonce, Path: Prefix, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	p.render(w, r, nil, status, "login", page{Title: "Sign in", Err: fe,
		Data: map[string]string{"Nonce": nonce, "Username": username}})
}

func (p *Panel) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		p.showLogin(w, r, http.StatusBadRequest, "", &formError{Form: "login", Message: "The form could not be read; try again."})
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostForm.Get("nonce"))) != 1 {
		p.showLogin(w, r, http.StatusForbidden, "", &formError{Form: "login",
			Message: "The sign-in form had expired or did not come from this page. Try again."})
		return
	}
	user, pass := r.PostForm.Get("username"), r.PostForm.Get("password")
	var tok struct {
		Token string `json:"token"`
	}
	err = p.call(r, nil, "POST", "/admin/login", map[string]string{"username": user, "password": pass}, &tok)
	var e *apiError
	switch {
	case errors.As(err, &e):
		msg := sentence(e.Message)
		field := e.Field
		switch e.Code {
		case "INVALID_CREDENTIALS":
			msg, field = "The username or the password is wrong.", "password"
		case "TOO_MANY_ATTEMPTS":
			msg = "Too many failed sign-ins for this user or from this computer. Wait a while before trying again."
		}
		status := e.Status
		if status == http.StatusUnauthorized {
			status = http.StatusOK // a page with a message, not an HTTP authentication challenge
		}
		p.showLogin(w, r, status, user, &formError{Form: "login", Field: field, Message: msg})
		return
	case err != nil:
		p.fail(w, r, nil, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: Prefix, MaxAge: -1})
	p.setSession(w, r, tok.Token)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (p *Panel) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := p.call(r, s, "DELETE", "/admin/session", nil, nil); err != nil {
		var e *apiError
		if !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
			p.fail(w, r, s, err)
			return
		}
	}
	p.clearSession(w, r)
	http.Redirect(w, r, Prefix+"signed-out?why=logout", http.StatusSeeOther)
}

func (p *Panel) signedOut(w http.ResponseWriter, r *http.Request) {
	msg := "You are signed out."
	switch r.URL.Query().Get("why") {
	case "expired":
		msg = "Your session expired, so you were signed out. A form you had not sent yet was not saved. Sign in again to continue."
	case "logout":
		msg = "You signed out. Close the browser window if this computer is shared."
	case "ended":
		msg = "Your session has ended (it was closed elsewhere, or your account was changed). Sign in again to continue."
	}
	p.clearSession(w, r)
	p.render(w, r, nil, http.StatusOK, "signedout", page{Title: "Signed out", Message: msg})
}

// pageNumber reads ?page= (from 1).
func pageNumber(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil || n < 1 || n > 100_000 {
		return 1
	}
	return n
}
