// Antaca administration panel. The only script: it sends the browser to
// the "signed out" page when the session's time is up, so that a page left
// open does not look usable. The server enforces the expiry either way.
(function () {
  "use strict";
  var exp = Number(document.body.getAttribute("data-expires-at"));
  if (!exp) {
    return;
  }
  var left = exp * 1000 - Date.now();
  window.setTimeout(function () {
    window.location.assign("/panel/signed-out?why=expired");
  }, Math.max(left, 0) + 500);
})();
