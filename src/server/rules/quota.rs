//! Per-address caps on what `auth = "open"` lets anyone create: users (counted while the
//! server runs: a user, once made, stays) and groups (counted while they exist: a group is
//! deleted with its last member). Without them one script inventing nicks and channels
//! fills the data directory, every new nick being a user with a mailbox.
//!
//! Pure bookkeeping, kept under the hub's lock by its caller; the replies are the hub's.

use foldhash::HashMap;
use std::net::IpAddr;

/// How many things each address has made, against a cap.
#[derive(Default)]
pub struct PerAddress {
    /// Count per address (absent = 0).
    counts: HashMap<IpAddr, usize>,
}

impl PerAddress {
    /// Counts one more for `ip` unless it already has `cap` (0 = no cap); whether it did.
    pub fn try_add(&mut self, ip: IpAddr, cap: usize) -> bool {
        let count = self.counts.entry(ip).or_default();
        if cap != 0 && *count >= cap {
            return false;
        }
        *count += 1;
        true
    }

    /// Counts one less for `ip` (a group it made was deleted).
    pub fn remove(&mut self, ip: IpAddr) {
        if let Some(count) = self.counts.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_cap_and_no_more_and_others_are_apart() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut made = PerAddress::default();
        assert!(made.try_add(a, 2) && made.try_add(a, 2));
        assert!(!made.try_add(a, 2));
        assert!(made.try_add(b, 2));
        made.remove(a);
        assert!(made.try_add(a, 2));
        assert!((0..1000).all(|_| made.try_add(a, 0)));
    }
}
