#!/bin/sh
# What the tests need beyond Rust, in one place (`make test-deps`, `make test`, .ci/run).
#
#   sh tests/needs.sh install   install what is missing: quiet, never interactive, fast when
#                               all is there; where it cannot (no root, no network) it warns.
#   sh tests/needs.sh skips     for each need still missing, one "SKIPPED ..." line on stderr
#                               saying which tests, why and the command that installs it, and
#                               on stdout a nextest filter matching those tests (empty if
#                               none), so that `make test` reports them as skipped. Under CI
#                               (CI=true) nothing is skipped: a missing need fails its tests.
#
# A test whose need is missing fails with the install command when run some other way
# (tests/support/needs.rs, `require`); it never passes without running.
set -u
cd "$(dirname "$0")/.."

BROWSER_DIR=tests/browser
CHROMIUM=${LANCHAT_CHROMIUM:-/usr/bin/chromium}

have() { command -v "$1" >/dev/null 2>&1; }

# --- the probes: each succeeds when the need is met ------------------------------------
have_netns() {
	have ip || return 1
	probe="lanchat-probe-$$"
	ip netns add "$probe" >/dev/null 2>&1 || return 1
	ip netns del "$probe" >/dev/null 2>&1
	return 0
}
have_python_irc() { python3 -c "import irc.client" >/dev/null 2>&1; }
have_irssi() { have irssi && have tmux; }
have_telnet() { have telnet && have tmux; }
have_browser() {
	[ -x "$CHROMIUM" ] && have node && [ -d "$BROWSER_DIR/node_modules/playwright-core" ]
}
have_ipv6() {
	python3 -c "import socket; socket.socket(socket.AF_INET6).bind(('::1', 0))" >/dev/null 2>&1
}

# --- install ----------------------------------------------------------------------------
warn() { echo "warning: $*" >&2; }

# Debian packages, as root (or with sudo that asks no password); a warning otherwise.
apt_install() {
	if [ "$(id -u)" = 0 ]; then
		sudo=""
	elif have sudo && sudo -n true 2>/dev/null; then
		sudo="sudo -n"
	else
		warn "not root: cannot install $*; run: sudo apt-get install $*"
		return 1
	fi
	if ! have apt-get; then
		warn "no apt-get here: install $* with this system's package manager"
		return 1
	fi
	echo "installing $* (apt-get)" >&2
	{ $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
		-o Dpkg::Options::=--force-confold "$@"; } </dev/null >/dev/null 2>&1 \
		|| { warn "apt-get install $* failed (no network?)"; return 1; }
}

install() {
	packages=""
	have ip || packages="$packages iproute2"
	have openssl || packages="$packages openssl"
	have irssi || packages="$packages irssi"
	have tmux || packages="$packages tmux"
	have telnet || packages="$packages telnet"
	[ -x "$CHROMIUM" ] || packages="$packages chromium"
	have node || packages="$packages nodejs"
	have npm || packages="$packages npm"
	# shellcheck disable=SC2086 # one word per package
	[ -z "$packages" ] || apt_install $packages
	if ! have_python_irc; then
		echo "installing python3's irc package (pip)" >&2
		python3 -m pip install --quiet --root-user-action=ignore irc </dev/null >/dev/null 2>&1 \
			|| python3 -m pip install --quiet --break-system-packages irc </dev/null >/dev/null 2>&1 \
			|| python3 -m pip install --quiet --user irc </dev/null >/dev/null 2>&1 \
			|| warn "could not install python3's irc package; run: python3 -m pip install irc"
	fi
	# The browser test's driver (playwright-core, which downloads no browser of its own),
	# again whenever package-lock.json changed since the last install.
	marker="$BROWSER_DIR/node_modules/.package-lock.json"
	if have npm && { [ ! -d "$BROWSER_DIR/node_modules/playwright-core" ] \
		|| [ "$BROWSER_DIR/package-lock.json" -nt "$marker" ]; }; then
		echo "installing the browser test's driver (npm ci in $BROWSER_DIR)" >&2
		(cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error </dev/null >/dev/null 2>&1) \
			|| warn "npm ci failed in $BROWSER_DIR; run it there to see why"
	fi
	return 0
}

# --- skips ------------------------------------------------------------------------------
skips() {
	if [ "${CI:-}" = true ]; then
		return 0
	fi
	filter=""
	skip() { # FILTER WHAT WHY
		echo "SKIPPED $2: $3" >&2
		# `& test(/./)`: a filter on binaries alone makes nextest leave the binary out
		# unlisted, and its summary would not count the tests as skipped.
		filter="${filter:+$filter | }($1 & test(/./))"
	}
	have_netns || skip "binary(netns)" "tests/netns.rs (2 tests)" \
		"cannot create network namespaces (needs root and iproute2: apt-get install iproute2)"
	have_python_irc || skip "(binary(irc) & not test(=irssi_in_tmux_talks_with_a_native_client))" \
		"tests/irc.rs's suite" "python3's irc package is missing (python3 -m pip install irc)"
	have_irssi || skip "(binary(irc) & test(=irssi_in_tmux_talks_with_a_native_client))" \
		"irssi_in_tmux_talks_with_a_native_client" "irssi or tmux is missing (apt-get install irssi tmux)"
	have_telnet || skip "binary(telnet)" "tests/telnet.rs" \
		"telnet or tmux is missing (apt-get install telnet tmux)"
	have_browser || skip "binary(browser)" "tests/browser.rs" \
		"needs $CHROMIUM, node and playwright-core (apt-get install chromium nodejs npm; npm ci in $BROWSER_DIR)"
	have openssl || skip "(binary(it) & test(=tls::openssl_s_client_logs_in_on_the_tls_door))" \
		"openssl_s_client_logs_in_on_the_tls_door" "openssl is missing (apt-get install openssl)"
	have_ipv6 || skip "test(/ipv6/)" "the IPv6 tests" "this machine has no IPv6 loopback (::1)"
	if [ -n "$filter" ]; then
		echo "(make test-deps installs what can be installed; these are counted as skipped)" >&2
		printf '%s\n' "$filter"
	fi
}

case "${1:-}" in
install) install ;;
skips) skips ;;
*)
	echo "usage: sh tests/needs.sh install|skips" >&2
	exit 2
	;;
esac
