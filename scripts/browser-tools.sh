#!/usr/bin/env bash
# Make sure the tools the browser and metrics checks use are on this machine: Debian's Chromium
# (/usr/bin/chromium), promtool (from Debian's prometheus package; only the binary is wanted, no
# daemon) and playwright-core in tests/browser/node_modules. Idempotent: what is already there is
# left alone, so a second run is a quick no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
BROWSER_DIR=tests/browser

apt_install() { # packages...
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends)
  if ! "${apt[@]}" "$@" >/tmp/browser-tools-apt.log 2>&1; then
    # An old or missing package list: refresh it once and try again.
    echo "tools: apt-get install $* failed; running apt-get update and retrying"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    "${apt[@]}" "$@" >/tmp/browser-tools-apt.log 2>&1 || { cat /tmp/browser-tools-apt.log >&2; return 1; }
  fi
}

# Chromium and promtool: one apt-get call for whatever is missing.
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  before=$(pgrep -x prometheus || true)
  echo "tools: installing ${missing[*]} (apt)"
  apt_install "${missing[@]}"
  # Installing the prometheus package may start its daemon (where no policy-rc.d forbids it);
  # only promtool is wanted, so stop a daemon that the install started and keep it from booting.
  after=$(pgrep -x prometheus || true)
  if [ -n "$after" ] && [ "$after" != "$before" ]; then
    echo "tools: stopping the prometheus daemon the package started"
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
      systemctl stop prometheus || true
      systemctl disable prometheus >/dev/null 2>&1 || true
    else
      service prometheus stop >/dev/null 2>&1 || true
    fi
    for pid in $(pgrep -x prometheus || true); do
      grep -qx "$pid" <<<"$before" || kill "$pid" 2>/dev/null || true
    done
  fi
fi
[ -x "$CHROMIUM" ] || { echo "tools: $CHROMIUM is missing after the install" >&2; exit 1; }
command -v promtool >/dev/null || { echo "tools: promtool is missing after the install" >&2; exit 1; }

# playwright-core, at the exact version package.json pins (package-lock.json is committed).
want=$(node -p "require('./$BROWSER_DIR/package.json').dependencies['playwright-core']")
have=$(node -p "try { require('./$BROWSER_DIR/node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$have" != "$want" ]; then
  echo "tools: installing playwright-core $want (npm)"
  if [ -f "$BROWSER_DIR/package-lock.json" ]; then
    (cd "$BROWSER_DIR" && npm ci --silent --no-audit --no-fund)
  else
    (cd "$BROWSER_DIR" && npm install --silent --no-audit --no-fund)
  fi
  have=$(node -p "require('./$BROWSER_DIR/node_modules/playwright-core/package.json').version")
  [ "$have" = "$want" ] || { echo "tools: playwright-core is $have, not $want" >&2; exit 1; }
fi

echo "tools: chromium $("$CHROMIUM" --version 2>/dev/null | awk '{print $2}') ($CHROMIUM)"
echo "tools: promtool $(promtool --version 2>&1 | awk 'NR==1 {print $3}') ($(command -v promtool))"
echo "tools: playwright-core $have ($BROWSER_DIR/node_modules/playwright-core)"
