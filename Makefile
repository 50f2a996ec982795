# lanchat: `make run-server [PORT=4119] [WEB_PORT=8080] [IRC_PORT=6667] [TLS_PORT=4129]`,
# `make run-client [HOST=addr] [PORT=4119]`, `make test`.
# PORT is always the server's chat port: the one run-server listens on, the one run-client
# connects to. Without HOST, run-client looks for the server on the LAN (then this machine).
# A second server on one machine: `make run-server PORT=4120 WEB_PORT=8081 IRC_PORT=6668 TLS_PORT=4130 IRC_TLS_PORT=6698`
# (given PORT, its data goes to data-PORT unless DATA_DIR says otherwise, so two servers
# never share a data directory). CONFIG names another configuration file.
HOST ?=
PORT ?=
WEB_PORT ?=
IRC_PORT ?=
TLS_PORT ?=
IRC_TLS_PORT ?=
CONFIG ?= configuration.toml
DATA_DIR ?= $(if $(PORT),data-$(PORT))
CARGO ?= cargo

.PHONY: build bench-build run-server run-client test test-deps lint fmt clean bench bench-quick bench-chart bench-peers bench-codec

build:
	$(CARGO) build --release

# The server and the load generator (crates/lanchat-bench, a workspace member of its own).
bench-build:
	$(CARGO) build --release --workspace

SERVER_ARGS = --config $(CONFIG) $(if $(PORT),--port $(PORT)) \
	$(if $(WEB_PORT),--web-port $(WEB_PORT)) $(if $(IRC_PORT),--irc-port $(IRC_PORT)) \
	$(if $(TLS_PORT),--tls-port $(TLS_PORT)) $(if $(IRC_TLS_PORT),--irc-tls-port $(IRC_TLS_PORT)) \
	$(if $(DATA_DIR),--data-dir $(DATA_DIR))

run-server: build
	./target/release/lanchat-server $(strip $(SERVER_ARGS))

# The client's own last line says why it ended; make need not add an "Error 1" after it.
run-client: build
	@./target/release/lanchat-client $(if $(HOST),$(HOST) $(PORT),$(if $(PORT),--sp $(PORT))) $(if $(TLS_PORT),--tls-port $(TLS_PORT)) || true

# Every test of the workspace (the chat and the load generator): unit, integration (real
# sockets), and the end-to-end binary tests. What they need beyond Rust is installed first
# (test-deps); a test whose need is still missing is reported as skipped, with the reason
# (tests/needs.sh), never as passed. Without cargo-nextest, cargo test runs them all and
# such a test fails, naming what to install.
test: test-deps
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		skip=$$(sh tests/needs.sh skips); \
		$(CARGO) nextest run --workspace --all-targets --no-fail-fast $${skip:+-E "not ($$skip)"}; \
	else \
		$(CARGO) test --workspace --all-targets --no-fail-fast; \
	fi

# What the tests need (Debian packages, python3's irc, the browser test's npm packages), if
# missing; quiet and quick when all is there; a warning where it cannot install.
test-deps:
	@sh tests/needs.sh install

# Benchmarks: lanchat against ngircd, inspircd and the loopback limit, on 127.0.0.1 only
# (docs/performance.md). BENCH_ARGS adds options, e.g. BENCH_ARGS="--runs 5".
# Both print the table and write target/bench.json (every value) and target/bench.svg (the
# chart, docs/performance.md); `lanchat-bench chart target/bench.json` draws it again.
bench: bench-build bench-peers
	./target/release/lanchat-bench $(BENCH_ARGS)

bench-quick: bench-build bench-peers
	./target/release/lanchat-bench --quick --runs 1 $(BENCH_ARGS)

# The per-message codec work alone (parse, format, records), ns per call: benches/codec.rs.
bench-codec:
	$(CARGO) bench --bench codec

# The IRC servers to compare with, from Debian, if missing (their services stay stopped:
# the benchmark starts each one itself with its own loopback-only configuration).
bench-peers:
	@missing=""; \
	command -v ngircd >/dev/null 2>&1 || missing="$$missing ngircd"; \
	command -v inspircd >/dev/null 2>&1 || missing="$$missing inspircd"; \
	command -v taskset >/dev/null 2>&1 || missing="$$missing util-linux"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			-o Dpkg::Options::=--force-confold $$missing >/dev/null) \
		|| echo "warning: could not install$$missing; the benchmark skips what is missing"; \
		for s in ngircd inspircd; do service $$s stop >/dev/null 2>&1 || true; done; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
