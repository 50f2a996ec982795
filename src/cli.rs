//! Command-line spellings shared by both binaries.

use std::ffi::OsString;

/// Rewrites seed 004's single-dash long flags (`-sip`, `-sp`) as `--sip`, `--sp`, which is
/// how clap knows them (its short flags are one letter). Only whole arguments equal to one
/// of `names` change, so a value such as a password is never touched unless it is exactly
/// such a flag.
pub fn single_dash_long_flags(
    args: impl IntoIterator<Item = OsString>,
    names: &[&str],
) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| {
            let long = arg
                .to_str()
                .and_then(|a| a.strip_prefix('-'))
                .filter(|name| names.contains(name));
            match long {
                Some(name) => OsString::from(format!("--{name}")),
                None => arg,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_004_flags_become_long_flags() {
        let args = [
            "client", "-u", "bob", "-sip", "10.0.0.1", "-sp", "9000", "--sp", "-s",
        ];
        let out = single_dash_long_flags(args.map(OsString::from), &["sip", "sp"]);
        assert_eq!(
            out,
            ["client", "-u", "bob", "--sip", "10.0.0.1", "--sp", "9000", "--sp", "-s"]
                .map(OsString::from)
        );
    }
}
