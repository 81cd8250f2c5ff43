//! Front End pool quorum: how many of a pool's Front End servers must be active for the pool to
//! keep running. Shared by the lab (which refuses a failover that would lose it) and the reports
//! and dashboard (which show it).

/// Pool-level quorum (SPEC.md section 6, Microsoft's high-availability planning): how many
/// servers must be active, and among how many of the first servers.
pub fn quorum(servers: usize) -> (usize, usize) {
    match servers {
        0 | 1 => (1, servers),
        2 => (1, 2),
        3 | 4 => (2, servers),
        5 | 6 => (3, servers),
        7 => (4, 7),
        8 | 9 => (4, 7),
        10..=12 => (5, 9),
        _ => (7, 12),
    }
}

#[cfg(test)]
mod tests {
    use super::quorum;

    #[test]
    fn quorum_follows_microsofts_table() {
        assert_eq!(quorum(1), (1, 1));
        assert_eq!(quorum(2), (1, 2));
        assert_eq!(quorum(3), (2, 3));
        assert_eq!(quorum(4), (2, 4));
        assert_eq!(quorum(5), (3, 5));
        assert_eq!(quorum(6), (3, 6));
        assert_eq!(quorum(7), (4, 7));
        assert_eq!(quorum(8), (4, 7));
        assert_eq!(quorum(9), (4, 7));
        assert_eq!(quorum(10), (5, 9));
        assert_eq!(quorum(12), (5, 9));
        assert_eq!(quorum(13), (7, 12));
        assert_eq!(quorum(16), (7, 12));
    }
}
