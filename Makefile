# lanchat: `make run-server`, `make run-client [HOST=addr] [PORT=4119]`, `make test`.
# Without HOST, run-client looks for the server on the LAN (then tries this machine).
HOST ?=
PORT ?=
CARGO ?= cargo

.PHONY: build run-server run-client test lint fmt clean

build:
	$(CARGO) build --release

run-server: build
	./target/release/lanchat-server --config configuration.toml

# The client's own last line says why it ended; make need not add an "Error 1" after it.
run-client: build
	@./target/release/lanchat-client $(if $(HOST),$(HOST) $(PORT),$(if $(PORT),--sp $(PORT))) || true

# Every test: unit, integration (real sockets), and the end-to-end binary tests.
test:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --all-targets --no-fail-fast; \
	else \
		$(CARGO) test --all-targets --no-fail-fast; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
