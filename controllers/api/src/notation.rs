//! How each store writes its own replication positions and history numbers,
//! so that an operator reads `0/4000060 on timeline 2` (what `psql` shows)
//! instead of `67108960@2`. Every controller provides its [`Notation`];
//! the coordinator uses it wherever a position or a store term is printed.

use crate::state::{History, Position, Term};

/// A store kind's way of writing positions and its history number.
#[derive(Debug, Clone, Copy)]
pub struct Notation {
    /// What the store calls its [`crate::Term`], the number that bumps on
    /// every promotion (`timeline`, `term`; EventStoreDB's own word is
    /// `epoch`). Never the coordinator's fencing token.
    pub term: &'static str,
    /// A position, including its history number, as the store's tools write it.
    pub position: fn(&Position) -> String,
}

impl Notation {
    /// Offset and history number, for stores with no notation of their own.
    pub const PLAIN: Notation = Notation {
        term: "term",
        position: plain,
    };

    /// `p` in this store's notation.
    pub fn position(&self, p: &Position) -> String {
        (self.position)(p)
    }

    /// The store's term `n` with its name (`timeline 2`).
    pub fn term(&self, n: Term) -> String {
        format!("{} {n}", self.term)
    }

    /// A position's history `h`, in the same word (`timeline 1`): the term
    /// the position was written in.
    pub fn history(&self, h: History) -> String {
        format!("{} {h}", self.term)
    }
}

fn plain(p: &Position) -> String {
    format!("offset {} in term {}", p.offset, p.history)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_both_numbers() {
        let p = Position {
            history: crate::History(3),
            offset: 42,
        };
        assert_eq!(Notation::PLAIN.position(&p), "offset 42 in term 3");
        assert_eq!(Notation::PLAIN.term(Term(3)), "term 3");
    }
}
