//! WAL positions: PostgreSQL prints an LSN as `HI/LO` (two hex halves of a
//! 64-bit byte offset); [`switchyard_controller::Position`] carries it as
//! `offset` with the timeline as its `history`.

/// Parse `16/B374D848` into a byte offset.
pub(crate) fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
        return None;
    }
    Some((hi << 32) | lo)
}

/// Format a byte offset the way PostgreSQL does.
pub(crate) fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Timeline of a WAL segment file name (`000000020000000000000003` → 2).
pub(crate) fn timeline_of_walfile(name: &str) -> Option<u64> {
    u64::from_str_radix(name.get(..8)?, 16).ok()
}

/// Parse a timeline history file into `(parent_timeline, switch_lsn)` lines.
pub(crate) fn parse_history(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let tli = f.next()?.parse().ok()?;
            let lsn = parse_lsn(f.next()?)?;
            Some((tli, lsn))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        assert_eq!(parse_lsn("0/40000A0"), Some(0x40000A0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(format_lsn((0x16 << 32) | 0xB374D848), "16/B374D848");
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("1/100000000"), None);
    }

    #[test]
    fn walfile_timeline() {
        assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
        assert_eq!(timeline_of_walfile("0000000A0000000000000003"), Some(10));
        assert_eq!(timeline_of_walfile("xyz"), None);
    }

    #[test]
    fn history_lines() {
        let h = "1\t0/3000148\tno recovery target specified\n\n2\t0/5000060\tno recovery target specified\n";
        assert_eq!(parse_history(h), vec![(1, 0x3000148), (2, 0x5000060)]);
    }
}
