#!/usr/bin/env bash
# Installs the tools some targets need beyond Go, Redis and PostgreSQL
# (those are .ci/services.sh's), from Debian's packages when missing:
#
#   bash .ci/tools.sh deploy    promtool and python3 with PyYAML (make deploy-check)
#   bash .ci/tools.sh browser   headless Chromium and a font (browser tests of make test)
#
# Each tool already present costs one `command -v`. Where apt-get is not
# available (not Debian, or not root and no sudo) it prints one line per
# missing tool saying what to install, and exits 0: the target then skips
# the check that needs the tool and says so.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
can_apt() { command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; }

# need TOOL-PRESENT-TEST HINT PACKAGE...: queue the packages when the test fails.
pkgs=()
hints=()
need() {
  local test="$1" hint="$2"
  shift 2
  if ! eval "$test" >/dev/null 2>&1; then
    pkgs+=("$@")
    hints+=("$hint")
  fi
}

for what in "${@:-deploy}"; do
  case "$what" in
    deploy)
      need "command -v promtool" \
        "promtool not found: install Prometheus's promtool (Debian: apt-get install --no-install-recommends prometheus)" \
        prometheus
      need "command -v python3" "python3 not found: install Python 3 with PyYAML (Debian: apt-get install python3-yaml)" \
        python3 python3-yaml
      need "python3 -c 'import yaml'" "PyYAML not found: install it (Debian: apt-get install python3-yaml)" \
        python3-yaml
      ;;
    browser)
      need "test -x /usr/bin/chromium" \
        "chromium not found: install it (Debian: apt-get install --no-install-recommends chromium fonts-dejavu-core)" \
        chromium fonts-dejavu-core
      ;;
    *)
      echo "usage: $0 [deploy] [browser]" >&2
      exit 2
      ;;
  esac
done

[ ${#pkgs[@]} -eq 0 ] && exit 0
# Deduplicate, keeping order.
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | awk '!seen[$0]++')
if can_apt; then
  echo "installing: ${pkgs[*]}"
  $SUDO apt-get update -qq
  # --no-install-recommends: prometheus alone would pull in the exporters
  # and a running server; only its promtool is wanted here.
  if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; then
    # The prometheus package starts its server where systemd runs; the
    # checks only need promtool.
    if [[ " ${pkgs[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
      $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    exit 0
  fi
  echo "apt-get install ${pkgs[*]} failed" >&2
fi
printf '%s\n' "${hints[@]}" | awk '!seen[$0]++' >&2
exit 0
