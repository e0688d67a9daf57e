//! A bound on the region codes kept apart in per-region statistics (drift, traffic, live quality).
//!
//! A region code is a province code (a fixed list, validated on the way in) and a free suffix, so a client could
//! send thousands of distinct codes and make every per-region report huge. The first [`MAX_TRACKED_REGIONS`]
//! codes seen are kept apart; later ones count under their province code. Cases and evidence always keep the
//! contact's own region.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::RwLock;
use saring_models::region::province;

/// Distinct region codes kept apart; more than any police region has districts.
pub const MAX_TRACKED_REGIONS: usize = 512;

/// The region codes seen so far, up to the bound.
#[derive(Debug, Default)]
pub struct RegionLabels {
    known: RwLock<HashSet<Arc<str>>>,
}

impl RegionLabels {
    /// The label `region` is counted under: itself while the bound allows, else its province.
    pub fn label<'a>(&self, region: &'a str) -> &'a str {
        {
            let known = self.known.read();
            if known.contains(region) {
                return region;
            }
            // Full: a code past the bound never takes the write lock (a client sending new codes on every call
            // must not serialise the scoring path).
            if known.len() >= MAX_TRACKED_REGIONS {
                return province(region);
            }
        }
        let mut known = self.known.write();
        if known.contains(region) || known.len() < MAX_TRACKED_REGIONS {
            known.insert(Arc::from(region));
            region
        } else {
            province(region)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_past_the_bound_count_under_their_province() {
        let labels = RegionLabels::default();
        let codes: Vec<String> = (0..MAX_TRACKED_REGIONS + 100).map(|index| format!("jatim.d{index}")).collect();
        let counted: HashSet<&str> = codes.iter().map(|code| labels.label(code)).collect();
        assert_eq!(counted.len(), MAX_TRACKED_REGIONS + 1, "the first codes, then the province");
        assert!(counted.contains("jatim"));
        assert_eq!(labels.label("jatim.d0"), "jatim.d0", "a known code stays itself");
        assert_eq!(labels.label("ntt.kupang"), "ntt");
    }
}
