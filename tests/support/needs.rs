//! What a test needs beyond Rust (tests/needs.sh): a missing tool fails the test, never
//! passes it.

/// Fails the test, naming what is missing and how to install it, unless `present`. A test
/// that cannot run must not pass: `make test` installs what it can (`make test-deps`) and
/// reports tests whose needs are still missing as skipped (tests/needs.sh), so this fires
/// only when a test is run some other way on a machine without `what`.
pub fn require(present: bool, what: &str, install: &str) {
    assert!(
        present,
        "{what} is missing, so this test cannot run. Install it with `{install}` (or \
         `make test-deps`); `make test` reports such tests as skipped instead."
    );
}
