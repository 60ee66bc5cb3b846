//! Vote arithmetic for region losses.
//!
//! The worst loss of `n` regions for a quantity that only ever adds up
//! (votes, data-bearing voters, electable members) is the `n` regions holding
//! the most of it, so the checker does not enumerate region subsets; the
//! property tests compare this against brute-force enumeration.

/// Strictly more than half of `total`.
pub fn majority(total: u64) -> u64 {
    total / 2 + 1
}

/// The regions (indices into `per_region`) whose loss removes the most, at
/// most `n` of them, and the amount they remove. Ties are broken by position,
/// so the earliest-declared region is named first. Regions holding nothing
/// are never chosen: losing them changes nothing.
pub fn worst_loss(per_region: &[u64], n: usize) -> (Vec<usize>, u64) {
    let mut order: Vec<usize> = (0..per_region.len())
        .filter(|&i| per_region[i] > 0)
        .collect();
    order.sort_by(|&a, &b| per_region[b].cmp(&per_region[a]).then(a.cmp(&b)));
    order.truncate(n);
    let lost = order.iter().map(|&i| per_region[i]).sum();
    order.sort_unstable();
    (order, lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_is_strict() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }

    #[test]
    fn worst_loss_takes_the_largest() {
        assert_eq!(worst_loss(&[2, 3, 0], 1), (vec![1], 3));
        assert_eq!(worst_loss(&[2, 2, 1], 1), (vec![0], 2));
        assert_eq!(worst_loss(&[2, 2, 1], 2), (vec![0, 1], 4));
        assert_eq!(worst_loss(&[0, 0], 1), (vec![], 0));
        assert_eq!(worst_loss(&[1, 1], 5), (vec![0, 1], 2));
    }
}
