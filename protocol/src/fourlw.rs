//! Four-letter words: on a fresh connection, a first four bytes that spell a known command
//! (instead of a frame length) ask for a one-shot text answer, after which the server closes.

/// The commands ZooKeeper knows (`FourLetterCommands`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FourLetterWord {
    Conf,
    Cons,
    Crst,
    Dirs,
    Dump,
    Envi,
    Gtmk,
    Hash,
    Isro,
    Mntr,
    Ruok,
    Srst,
    Srvr,
    Stat,
    Stmk,
    Wchc,
    Wchp,
    Wchs,
}

const WORDS: &[(&str, FourLetterWord)] = &[
    ("conf", FourLetterWord::Conf),
    ("cons", FourLetterWord::Cons),
    ("crst", FourLetterWord::Crst),
    ("dirs", FourLetterWord::Dirs),
    ("dump", FourLetterWord::Dump),
    ("envi", FourLetterWord::Envi),
    ("gtmk", FourLetterWord::Gtmk),
    ("hash", FourLetterWord::Hash),
    ("isro", FourLetterWord::Isro),
    ("mntr", FourLetterWord::Mntr),
    ("ruok", FourLetterWord::Ruok),
    ("srst", FourLetterWord::Srst),
    ("srvr", FourLetterWord::Srvr),
    ("stat", FourLetterWord::Stat),
    ("stmk", FourLetterWord::Stmk),
    ("wchc", FourLetterWord::Wchc),
    ("wchp", FourLetterWord::Wchp),
    ("wchs", FourLetterWord::Wchs),
];

impl FourLetterWord {
    /// The command spelled by the first four bytes of `bytes`, if any.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let prefix = bytes.get(..4)?;
        WORDS
            .iter()
            .find(|(name, _)| name.as_bytes() == prefix)
            .map(|(_, word)| *word)
    }

    pub fn name(self) -> &'static str {
        WORDS
            .iter()
            .find(|(_, word)| *word == self)
            .map_or("", |(name, _)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_known_words_only() {
        assert_eq!(
            FourLetterWord::from_bytes(b"ruok"),
            Some(FourLetterWord::Ruok)
        );
        assert_eq!(
            FourLetterWord::from_bytes(b"mntr\n"),
            Some(FourLetterWord::Mntr)
        );
        assert_eq!(FourLetterWord::from_bytes(b"ruo"), None);
        assert_eq!(FourLetterWord::from_bytes(b"nope"), None);
        // A frame length prefix (a connect request of 45 bytes) is not a word.
        assert_eq!(FourLetterWord::from_bytes(&[0, 0, 0, 45]), None);
        for (name, word) in WORDS {
            assert_eq!(word.name(), *name);
            assert_eq!(FourLetterWord::from_bytes(name.as_bytes()), Some(*word));
        }
    }
}
