package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/antaca/antaca/authz"
	"github.com/antaca/antaca/ledger"
	"github.com/antaca/antaca/ledger/pgstore"
)

var programIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// programView is a program as the API shows it: the remote secret only
// when it was just made, and createdAt in RFC 3339 like every other
// resource (the ledger keeps Unix milliseconds).
func programView(p authz.Program, withSecret bool) authz.Program {
	if !withSecret {
		p.RemoteSecret = ""
	}
	if ms, err := strconv.ParseInt(p.CreatedAt, 10, 64); err == nil {
		p.CreatedAt = time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
	}
	if p.Ranges == nil {
		p.Ranges = []authz.BINRange{}
	}
	if p.CardTypes == nil {
		p.CardTypes = []authz.CardType{}
	}
	return p
}

// programIn is the body of POST and PUT .../programs.
type programIn struct {
	ID                string           `json:"id"`
	Name              string           `json:"name"`
	Currency          string           `json:"currency"`
	Ranges            []authz.BINRange `json:"binRanges"`
	CardTypes         []authz.CardType `json:"cardTypes"`
	DigitalFirst      bool             `json:"digitalFirst"`
	TimeZone          string           `json:"timeZone"`
	Controls          *authz.Controls  `json:"controls"`
	RemoteURL         string           `json:"remoteUrl"`
	DecisionTimeoutMS int64            `json:"decisionTimeoutMs"`
	StandIn           authz.StandIn    `json:"standIn"`
}

func (in programIn) program(partnerID string) authz.Program {
	p := authz.Program{ID: in.ID, PartnerID: partnerID, Name: in.Name, Currency: in.Currency, Ranges: in.Ranges,
		CardTypes: in.CardTypes, DigitalFirst: in.DigitalFirst, TimeZone: in.TimeZone, RemoteURL: in.RemoteURL,
		DecisionTimeoutMS: in.DecisionTimeoutMS, StandIn: in.StandIn}
	if in.Controls != nil {
		p.Controls = *in.Controls
	}
	return p
}

func programErr(err error) error {
	var ae *Error
	if errors.As(err, &ae) {
		return err
	}
	if errors.Is(err, authz.ErrInvalidProgram) || errors.Is(err, authz.ErrInvalidControls) {
		var fe *authz.FieldError
		if errors.As(err, &fe) {
			return invalid(fe.Field, err.Error())
		}
		return invalid("", err.Error())
	}
	return err
}

// POST /admin/partners/{partnerId}/programs
func (s *Server) createProgram(c *call) (int, any, error) {
	partner, err := c.partner()
	if err != nil {
		return 0, nil, err
	}
	var in programIn
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.ID == "" {
		in.ID = ledger.NewID("prg")
	}
	if !programIDRE.MatchString(in.ID) {
		return 0, nil, invalid("id", "id must be 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit")
	}
	p := in.program(partner.ID)
	if len(p.Ranges) == 0 {
		return 0, nil, invalid("binRanges", "a program needs at least one BIN range")
	}
	if err := p.Validate(); err != nil {
		return 0, nil, programErr(err)
	}
	if p.RemoteURL != "" {
		if p.RemoteSecret, err = newWebhookSecret(); err != nil {
			return 0, nil, err
		}
	}
	if err := s.cfg.Ledger.CreateProgram(c.ctx, p); err != nil {
		return 0, nil, err
	}
	got, err := s.cfg.Ledger.Program(c.ctx, p.PartnerID, p.ID)
	if err != nil {
		return 0, nil, err
	}
	s.log.InfoContext(c.ctx, "program created", "partner", p.PartnerID, "program", p.ID, "by", c.admin.Username)
	return http.StatusCreated, programView(got, true), nil
}

// program reads the program named by the path, of the partner in scope.
func (c *call) program() (authz.Program, error) {
	partner, err := c.partner()
	if err != nil {
		return authz.Program{}, err
	}
	p, err := c.s.cfg.Ledger.Program(c.ctx, partner.ID, c.r.PathValue("programId"))
	if errors.Is(err, ledger.ErrProgramNotFound) {
		return authz.Program{}, errProgramNotFound
	}
	return p, err
}

var errProgramNotFound = apiErr(http.StatusNotFound, "PROGRAM_NOT_FOUND", "program not found")

// GET /admin/partners/{partnerId}/programs, GET /secure/programs
func (s *Server) listPrograms(c *call) (int, any, error) {
	partner, err := c.partner()
	if err != nil {
		return 0, nil, err
	}
	ps, err := s.cfg.Ledger.Programs(c.ctx, partner.ID)
	if err != nil {
		return 0, nil, err
	}
	out := make([]authz.Program, 0, len(ps))
	for _, p := range ps {
		out = append(out, programView(p, false))
	}
	return http.StatusOK, map[string]any{"programs": out}, nil
}

// GET /admin/partners/{partnerId}/programs/{programId}
func (s *Server) getProgram(c *call) (int, any, error) {
	p, err := c.program()
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, programView(p, false), nil
}

// PUT /admin/partners/{partnerId}/programs/{programId}: replaces every
// field but the id and the currency (a program's cards keep theirs).
// Controls absent from the body stay as they are.
func (s *Server) updateProgram(c *call) (int, any, error) {
	cur, err := c.program()
	if err != nil {
		return 0, nil, err
	}
	var in programIn
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.ID != "" && in.ID != cur.ID {
		return 0, nil, invalid("id", "the id of a program cannot change")
	}
	if in.Currency != "" && in.Currency != cur.Currency {
		return 0, nil, invalid("currency", "the currency of a program cannot change")
	}
	in.ID, in.Currency = cur.ID, cur.Currency
	p := in.program(cur.PartnerID)
	if in.Controls == nil {
		p.Controls = cur.Controls
	}
	if len(p.Ranges) == 0 {
		return 0, nil, invalid("binRanges", "a program needs at least one BIN range")
	}
	if err := p.Validate(); err != nil {
		return 0, nil, programErr(err)
	}
	p.RemoteSecret = cur.RemoteSecret
	fresh := false
	if p.RemoteURL != "" && p.RemoteSecret == "" {
		if p.RemoteSecret, err = newWebhookSecret(); err != nil {
			return 0, nil, err
		}
		fresh = true
	}
	if err := s.cfg.Ledger.UpdateProgram(c.ctx, p); err != nil {
		return 0, nil, err
	}
	got, err := s.cfg.Ledger.Program(c.ctx, p.PartnerID, p.ID)
	if err != nil {
		return 0, nil, err
	}
	s.log.InfoContext(c.ctx, "program updated", "partner", p.PartnerID, "program", p.ID, "by", c.admin.Username)
	return http.StatusOK, programView(got, fresh), nil
}

// controlsView is the answer of the controls routes: the controls in force,
// where they come from (card, program or none) and the current windows.
type controlsView struct {
	Controls authz.Controls      `json:"controls"`
	Source   string              `json:"source"`
	Program  string              `json:"programId"`
	Usage    []authz.WindowUsage `json:"usage"`
}

// GET/PUT /admin/partners/{partnerId}/programs/{programId}/controls
func (s *Server) getProgramControls(c *call) (int, any, error) {
	p, err := c.program()
	if err != nil {
		return 0, nil, err
	}
	src := "program"
	if p.Controls.IsZero() {
		src = "none"
	}
	return http.StatusOK, controlsView{Controls: p.Controls, Source: src, Program: p.ID, Usage: []authz.WindowUsage{}}, nil
}

func (s *Server) setProgramControls(c *call) (int, any, error) {
	p, err := c.program()
	if err != nil {
		return 0, nil, err
	}
	var in authz.Controls
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	in.Normalize()
	if err := in.Validate(); err != nil {
		return 0, nil, programErr(err)
	}
	if err := s.cfg.Ledger.SetProgramControls(c.ctx, p.PartnerID, p.ID, in); err != nil {
		return 0, nil, err
	}
	s.log.InfoContext(c.ctx, "program controls set", "partner", p.PartnerID, "program", p.ID, "by", c.admin.Username)
	return s.getProgramControls(c)
}

// cardControls reads the controls in force for a card, the raw form the
// ledger compares a customer's change with, and the card's program.
func (s *Server) cardControls(c *call, card ledger.Card) (ctl authz.Controls, raw, source string, p authz.Program, err error) {
	p, err = s.cfg.Ledger.Program(c.ctx, card.PartnerID, ledger.ProgramOfCard(card.PartnerID, card.ProgramID))
	if err != nil && !errors.Is(err, ledger.ErrProgramNotFound) {
		return ctl, "", "", p, err
	}
	err = nil
	raw, source = card.Controls, "card"
	if raw == "" {
		source = "program"
		if stored, rerr := s.cfg.Ledger.ProgramControlsJSON(c.ctx, card.PartnerID, ledger.ProgramOfCard(card.PartnerID, card.ProgramID)); rerr == nil {
			raw = stored
		}
		ctl = p.Controls
		if ctl.IsZero() {
			source = "none"
		}
		return ctl, raw, source, p, nil
	}
	if err := json.Unmarshal([]byte(raw), &ctl); err != nil {
		return ctl, raw, source, p, err
	}
	return ctl, raw, source, p, nil
}

// stateCard is the card that carries the state: a digital-first copy's
// original.
func (s *Server) stateCard(c *call) (ledger.Card, error) {
	card, err := c.card()
	if err != nil {
		return card, err
	}
	if card.CopyOf != "" {
		return s.cfg.Ledger.Card(c.ctx, card.PartnerID, card.CopyOf)
	}
	return card, nil
}

// GET .../cards/{cardId}/controls
func (s *Server) getCardControls(c *call) (int, any, error) {
	card, err := s.stateCard(c)
	if err != nil {
		return 0, nil, err
	}
	ctl, _, src, p, err := s.cardControls(c, card)
	if err != nil {
		return 0, nil, err
	}
	usage, err := s.cfg.Ledger.Usage(c.ctx, card.PartnerID, card.ID, ctl, p)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, controlsView{Controls: ctl, Source: src, Program: ledger.ProgramOfCard(card.PartnerID, card.ProgramID), Usage: usage}, nil
}

var errLoosens = apiErr(http.StatusForbidden, "CONTROLS_LOOSENED", "a cardholder may only tighten the controls in force")

// PUT .../cards/{cardId}/controls. On the customer channel the new
// controls must decline everything the controls in force decline (403
// CONTROLS_LOOSENED otherwise).
func (s *Server) setCardControls(c *call) (int, any, error) {
	card, err := s.stateCard(c)
	if err != nil {
		return 0, nil, err
	}
	var in authz.Controls
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	in.Normalize()
	if err := in.Validate(); err != nil {
		return 0, nil, programErr(err)
	}
	var seen *string
	if c.rt.ch == customerCh {
		cur, raw, _, _, err := s.cardControls(c, card)
		if err != nil {
			return 0, nil, err
		}
		if err := cur.CheckTightens(in); err != nil {
			return 0, nil, &Error{Status: errLoosens.Status, Code: errLoosens.Code, Message: err.Error()}
		}
		seen = &raw
	}
	err = s.cfg.Ledger.SetCardControls(c.ctx, card.PartnerID, card.ID, &in, seen)
	if errors.Is(err, ledger.ErrCardChanged) {
		return 0, nil, apiErr(http.StatusConflict, "CONTROLS_CHANGED", "the controls changed meanwhile; read them and try again")
	}
	if err != nil {
		return 0, nil, err
	}
	s.log.InfoContext(c.ctx, "card controls set", "partner", card.PartnerID, "card", card.ID, "channel", lockSource(c.rt.ch))
	return s.getCardControls(c)
}

// DELETE .../cards/{cardId}/controls: the card's program's controls apply
// again.
func (s *Server) deleteCardControls(c *call) (int, any, error) {
	card, err := s.stateCard(c)
	if err != nil {
		return 0, nil, err
	}
	if err := s.cfg.Ledger.SetCardControls(c.ctx, card.PartnerID, card.ID, nil, nil); err != nil {
		return 0, nil, err
	}
	s.log.InfoContext(c.ctx, "card controls removed", "partner", card.PartnerID, "card", card.ID, "channel", lockSource(c.rt.ch))
	return s.getCardControls(c)
}

// POST /admin/partners/{partnerId}/programs/{programId}/controls/replay:
// what these controls would have declined of the program's past traffic
// that was approved, and approved of what controls declined. Writes
// nothing.
func (s *Server) replayControls(c *call) (int, any, error) {
	p, err := c.program()
	if err != nil {
		return 0, nil, err
	}
	var in struct {
		Controls *authz.Controls `json:"controls"`
		Since    string          `json:"since"`
		Top      int             `json:"top"`
	}
	if err := c.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Controls == nil {
		return 0, nil, invalid("controls", "controls are required")
	}
	in.Controls.Normalize()
	if err := in.Controls.Validate(); err != nil {
		field := "controls"
		var fe *authz.FieldError
		if errors.As(err, &fe) && fe.Field != "" {
			field += "." + fe.Field
		}
		return 0, nil, invalid(field, err.Error())
	}
	since := 720 * time.Hour
	if in.Since != "" {
		if since, err = time.ParseDuration(in.Since); err != nil || since <= 0 || since > 400*24*time.Hour {
			return 0, nil, invalid("since", "since must be a duration such as 720h, at most 9600h")
		}
	}
	if in.Top == 0 {
		in.Top = 10
	}
	if in.Top < 1 || in.Top > 100 {
		return 0, nil, invalid("top", "top must be 1 to 100")
	}
	now := s.now()
	if s.cfg.DB.Pool() == nil {
		return 0, nil, apiErr(http.StatusNotImplemented, "NOT_AVAILABLE_ON_EMBEDDED_STORE", "replay reads the journal in PostgreSQL; antaca demo runs without it")
	}
	rep, err := pgstore.ReplayTraffic(c.ctx, s.cfg.DB.Pool(), p.PartnerID, p.ID, p.Location(), *in.Controls, now.Add(-since), now, in.Top)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, rep, nil
}
